// libgpiod from Debian (libgpiod-dev). The GPIO target's libgpiod backend is written
// against the v1 API (1.6, Debian 12 / Raspberry Pi OS bookworm); v2 shares the
// pkg-config name and would need a backend of its own.
#include <gpiod.h>
