// The C and C++ runtimes the prebuilt addon needs are held to what Node 20's own Linux binaries
// need (glibc 2.28, GCC 8's libstdc++), so that it loads wherever Node 20 runs. The addon is
// built with GCC 12 against glibc 2.36 headers here; each symbol that would raise the floor is
// avoided at its source (binding.cc: make_shared; thread_pool.cc: condition_variable::wait),
// except this one, which no source line asks for.
//
// libstdc++'s inline reference counting (shared_ptr, std::string) asks glibc whether the process
// is single-threaded through `__libc_single_threaded`, a variable glibc has only from 2.32 on,
// whenever the build's headers have <sys/single_threaded.h>. That one reference put the
// binary's glibc floor at 2.32 (Debian 11 and Ubuntu 20.04 have 2.31, RHEL 8 2.28). Defined here
// with hidden visibility, every reference in the addon binds to this copy at link time and none
// is left for the dynamic loader. Its value, 0 ("the process may be multi-threaded"), makes the
// inline code take the atomic path always, which is correct in every process (and Node always
// runs threads of its own, so glibc's own flag would read 0 too).
#include <cstddef>  // defines __GLIBC__ where the C library is glibc

#if defined(__linux__) && defined(__GLIBC__) && defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}
#endif
#endif
