#include <iostream>
#include <map>
#include <string>
#include <vector>
#include <algorithm>
#include <sys/utsname.h>
extern "C" {
#include "vec.h"
int vla_sum(int n, const char *s);
}
template <typename T> T total(const std::vector<T> &v) { T s{}; for (auto &x : v) s += x; return s; }
int main() {
	struct utsname u; uname(&u);
	std::map<std::string, int> m{{"a", 1}, {"b", 2}};
	std::vector<int> v{3, 1, 2}; std::sort(v.begin(), v.end());
	struct vec a{}; for (int i = 0; i < 10; i++) vec_push(&a, i);
	std::cout << "machine=" << u.machine << " sum=" << vec_sum(&a) << " t=" << total(v)
	          << " crc=" << crc32_of("abc", 3) << " vla=" << vla_sum(8, "hello") << " m=" << m.size() << "\n";
	return 0;
}
