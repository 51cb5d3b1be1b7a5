#ifndef WARBLER_CHOSTSHIMS_H
#define WARBLER_CHOSTSHIMS_H

/// 1 when the kernel's clock is synchronised (what timedatectl reports as NTPSynchronized), 0 when not,
/// -1 when adjtimex cannot be read.
int warbler_clock_synchronized(void);

#endif
