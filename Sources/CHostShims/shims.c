// posix_spawn_file_actions_addclosefrom_np is declared under _GNU_SOURCE only.
#define _GNU_SOURCE
#include "CHostShims.h"
#include <sys/timex.h>
#include <sys/random.h>
#include <errno.h>

int warbler_clock_synchronized(void) {
    struct timex tx = {0};
    int state = adjtimex(&tx);
    if (state < 0) return -1;
    return (state != TIME_ERROR && !(tx.status & STA_UNSYNC)) ? 1 : 0;
}

int warbler_read_timex(warbler_timex_reading *out) {
    struct timex tx = {0};
    int state = adjtimex(&tx);
    if (state < 0) return -1;
    out->synchronized = (state != TIME_ERROR && !(tx.status & STA_UNSYNC)) ? 1 : 0;
    // The offset is in nanoseconds when STA_NANO is set, else microseconds; the errors are always microseconds.
    out->offset_seconds = (double)tx.offset / ((tx.status & STA_NANO) ? 1e9 : 1e6);
    out->max_error_seconds = (double)tx.maxerror / 1e6;
    out->estimated_error_seconds = (double)tx.esterror / 1e6;
    return 0;
}

// Weak: a glibc older than 2.34 has no closefrom action, and the binary must still load there.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int) __attribute__((weak));

int warbler_spawn_close_from(posix_spawn_file_actions_t *actions, int low) {
    if (posix_spawn_file_actions_addclosefrom_np == 0) return -1;
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}

int warbler_random_bytes(void *buffer, size_t length) {
    size_t filled = 0;
    while (filled < length) {
        ssize_t n = getrandom((char *)buffer + filled, length - filled, 0);
        if (n > 0) {
            filled += (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}
