/* Fails on purpose: the build system must see the exit status (3). */
int main(void) { return 3; }
