#include "CHostShims.h"
#include <sys/timex.h>

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
