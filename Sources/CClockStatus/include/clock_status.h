#ifndef MGE_CLOCK_STATUS_H
#define MGE_CLOCK_STATUS_H

/// What the kernel says of the system clock's synchronization (adjtimex(2) with no
/// changes): 1 synchronized, 0 not (TIME_ERROR or STA_UNSYNC: no NTP client has set it),
/// -1 the call failed (errno says why).
int mge_clock_synchronized(void);

#endif
