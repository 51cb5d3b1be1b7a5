#ifndef WARBLER_CHOSTSHIMS_H
#define WARBLER_CHOSTSHIMS_H

#include <spawn.h>
#include <stddef.h>

/// 1 when the kernel's clock is synchronised (what timedatectl reports as NTPSynchronized), 0 when not,
/// -1 when adjtimex cannot be read.
int warbler_clock_synchronized(void);

/// The kernel clock discipline's state, read with adjtimex(2) without changing anything (modes 0).
typedef struct {
    /// 1 when synchronised (as warbler_clock_synchronized), 0 when not.
    int synchronized;
    /// Current offset from the reference, in seconds.
    double offset_seconds;
    /// Maximum error, in seconds.
    double max_error_seconds;
    /// Estimated error, in seconds.
    double estimated_error_seconds;
} warbler_timex_reading;

/// 0 and fills `out`; -1 when adjtimex cannot be read (errno says why).
int warbler_read_timex(warbler_timex_reading *out);

/// Adds "close every descriptor from `low` up" to a posix_spawn's file actions (glibc 2.34+'s
/// posix_spawn_file_actions_addclosefrom_np); 0, or -1 when this glibc has no such action.
int warbler_spawn_close_from(posix_spawn_file_actions_t *actions, int low);

/// Fills `buffer` with `length` bytes from the kernel's random source (getrandom(2), retried on EINTR and short
/// reads); 0, or -1 when it cannot (errno says why).
int warbler_random_bytes(void *buffer, size_t length);

#endif
