"""`babelfish devices`: the audio devices and the sinks' monitors."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Register "devices" on the `babelfish` subparsers."""
    sub.add_parser("devices", help="list audio devices").set_defaults(func=cmd_devices)


def cmd_devices(args) -> int:
    """`babelfish devices`: the audio devices; 1 when there are none."""
    from babelfish.audio import listing, sysaudio

    found = listing.list_devices()
    print(listing.format_devices(found))
    print(sysaudio.format_monitors(sysaudio.monitors()))
    return 0 if found else 1
