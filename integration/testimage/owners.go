package testimage

// OwnersRepo is a three-layer image of the host's platform whose files
// have owners other than root, as a Debian rootfs has (PushOwners):
//
//	/home/xrunuser/         1000:1000 0750 (layer 1)
//	/home/xrunuser/notes    1000:1000 0640
//	/home/xrunuser/gone     1000:1000 0644, deleted by a whiteout in layer 3
//	/usr/bin/setuid-root    0:0       4755 (a copy of the binary)
//	/usr/bin/setgid-staff   0:50      2755
//	/opt/ro/                1000:1000 0555, holding ro-file 1000:1000 0444
//	/var/spool/private/     100:101   0700, holding secret 100:101 0600 (layer 2)
//	/var/far                100000:100000 0644: beyond the 65536 ids a run maps
//	/etc/removed            deleted by a whiteout in layer 3
//	/etc/added              0:0 0644 "layer3\n" (layer 3)
const OwnersRepo = "xrun-test/owners:latest"

func ownersLayers(binName string, bin []byte) [][]entry {
	l1 := append(baseEntries(binName, bin),
		entry{path: "etc/removed", mode: 0o644, content: []byte("layer1\n")},
		entry{path: "home/", mode: 0o755},
		entry{path: "home/xrunuser/", mode: 0o750, uid: 1000, gid: 1000},
		entry{path: "home/xrunuser/notes", mode: 0o640, content: []byte("notes\n"), uid: 1000, gid: 1000},
		entry{path: "home/xrunuser/gone", mode: 0o644, content: []byte("gone\n"), uid: 1000, gid: 1000},
		entry{path: "usr/", mode: 0o755},
		entry{path: "usr/bin/", mode: 0o755},
		entry{path: "usr/bin/setuid-root", mode: 0o4755, content: bin},
		entry{path: "usr/bin/setgid-staff", mode: 0o2755, content: []byte("#!/bin/sh\n"), uid: 0, gid: 50},
		entry{path: "opt/", mode: 0o755},
		entry{path: "opt/ro/", mode: 0o555, uid: 1000, gid: 1000},
		entry{path: "opt/ro/ro-file", mode: 0o444, content: []byte("ro\n"), uid: 1000, gid: 1000},
	)
	l2 := []entry{
		entry{path: "var/", mode: 0o755},
		entry{path: "var/spool/", mode: 0o755},
		entry{path: "var/spool/private/", mode: 0o700, uid: 100, gid: 101},
		entry{path: "var/spool/private/secret", mode: 0o600, content: []byte("secret\n"), uid: 100, gid: 101},
		entry{path: "var/far", mode: 0o644, content: []byte("far\n"), uid: 100000, gid: 100000},
	}
	l3 := []entry{
		entry{path: "etc/.wh.removed", mode: 0o644},
		entry{path: "etc/added", mode: 0o644, content: []byte("layer3\n")},
		entry{path: "home/xrunuser/.wh.gone", mode: 0o644},
	}
	return [][]entry{l1, l2, l3}
}

// PushOwners builds OwnersRepo for the host's platform from im's binary for
// it and pushes it to the registry at addr. It returns the reference.
func (im *Images) PushOwners(addr string) (string, error) {
	p, bin, err := im.hostBinary()
	if err != nil {
		return "", err
	}
	img, err := buildImage(p.OS, p.Arch, p.Variant, true, ownersLayers(p.BinName(), bin)...)
	if err != nil {
		return "", err
	}
	return pushImage(addr, OwnersRepo, img)
}
