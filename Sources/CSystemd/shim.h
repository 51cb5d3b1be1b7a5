#ifndef WARBLER_CSYSTEMD_H
#define WARBLER_CSYSTEMD_H
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
