#include "clock_status.h"

#include <sys/timex.h>

int mge_clock_synchronized(void) {
  struct timex t = {0};
  t.modes = 0; /* read only */
  int state = adjtimex(&t);
  if (state == -1) return -1;
  if (state == TIME_ERROR || (t.status & STA_UNSYNC)) return 0;
  return 1;
}
