"""The emulated building's wired signals, on the GPIO line server the appliance reads
through its `emulated` GPIO backend (Sources/GPIO/EmulatedGPIO.swift): the pins of the
shipped site.yaml (a Raspberry Pi 4 header), and a transfer switch that moves when the
appliance drives its command.

    GPIO17  utility_available   high while the utility is there
    GPIO22  switch_at_utility   high while the switch is at the utility
    GPIO23  switch_at_island    high while it is at the island
    GPIO24  emergency_stop      active low with a pull-up: idle high
    GPIO5   transfer_to_island  the appliance's command: high = island
    GPIO12, GPIO13              load-shed relays (kitchen, classrooms): high = shed

The switch takes `transfer_seconds` to move, with both contacts open in between (as a real
automatic transfer switch does). A site swaps all this for real pins by setting
`gpio.backend: libgpiod` in site.yaml; chip and lines stay as they are.

No pytest at import: the building emulator and scripts/demo use it.
"""
import threading
import time

from gpio_line_server import LineServer

UTILITY, AT_UTILITY, AT_ISLAND, ESTOP = "GPIO17", "GPIO22", "GPIO23", "GPIO24"
TRANSFER, SHED = "GPIO5", ("GPIO12", "GPIO13")


class BuildingWiring:
    def __init__(self, socket_path, transfer_seconds=0.3):
        self.server = LineServer(socket_path)
        self.transfer_seconds = transfer_seconds
        self._lock = threading.Lock()
        self.position = "utility"        # utility, moving, island
        self.utility = True
        self.transfers = []              # (wall, "island" | "utility")
        self.shed = {name: False for name in SHED}
        self.server.set_input(UTILITY, True)
        self.server.set_input(AT_UTILITY, True)
        self.server.set_input(AT_ISLAND, False)
        self.server.set_input(ESTOP, True)
        self.server.on_output(self._output)

    @property
    def socket_path(self):
        return self.server.socket_path

    @property
    def islanded(self):
        with self._lock:
            return self.position == "island"

    @property
    def on_utility(self):
        """The building is fed from the utility: the switch is there and the utility is up."""
        with self._lock:
            return self.position == "utility" and self.utility

    def set_utility(self, available):
        with self._lock:
            if self.utility == available:
                return
            self.utility = available
        self.server.set_input(UTILITY, available)

    def _output(self, name, high):
        if name in self.shed:
            self.shed[name] = high
            return
        if name != TRANSFER:
            return
        target = "island" if high else "utility"
        with self._lock:
            if self.position == target:
                return
            self.position = "moving"
        # Break before make: both contacts open while it moves.
        self.server.set_input(AT_UTILITY, False)
        self.server.set_input(AT_ISLAND, False)
        threading.Thread(target=self._arrive, args=(target,), daemon=True).start()

    def _arrive(self, target):
        time.sleep(self.transfer_seconds)
        # The command may have been taken back while it moved: go where it says now.
        now = self.server.level(TRANSFER)
        target = "island" if now else "utility"
        with self._lock:
            self.position = target
            self.transfers.append((time.time(), target))
        self.server.set_input(AT_UTILITY, target == "utility")
        self.server.set_input(AT_ISLAND, target == "island")

    def close(self):
        self.server.close()
