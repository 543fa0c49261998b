"""A faithful local Exchange Online: Entra token endpoint + adminapi, over HTTPS.

It stands in for Microsoft's service, so it imports nothing from the rest of `reconciler`;
the reconciler reaches it only over HTTP. See docs/emulator.md.
"""

from reconciler.emulator.emulator import Emulator
from reconciler.emulator.settings import EmulatorSettings

__all__ = ["Emulator", "EmulatorSettings"]
