/* crc32.h: a tiny C library, the example project of xrun's README. */
#ifndef CRC32_H
#define CRC32_H
#include <stddef.h>
#include <stdint.h>

/* crc32 returns the CRC-32 (IEEE 802.3) of buf[0..len). */
uint32_t crc32(const void *buf, size_t len);
/* load_le32 reads a little-endian 32-bit value, whatever the host's byte order. */
uint32_t load_le32(const unsigned char *p);
#endif
