"""The platforms and architectures a plugin library is built for and checked against.

The loader's vocabulary (`linux`, `macos`, `windows`; `x86_64`, `aarch64`, ...) is written here
once: settings validate `--platform`, the checker and the release tooling judge a library against
a `Target`, and host detection answers "what does this machine load?".
"""

from __future__ import annotations

import platform as _host
import sys
from dataclasses import dataclass
from typing import Literal

from plugin_packaging.errors import PackagingError

Platform = Literal["linux", "macos", "windows"]
PLATFORMS: tuple[Platform, ...] = ("linux", "macos", "windows")

#: Word size and byte order of each architecture name the binary readers produce.
ARCHITECTURES: dict[str, tuple[int, str]] = {
    "x86_64": (64, "little"),
    "aarch64": (64, "little"),
    "x86": (32, "little"),
    "arm": (32, "little"),
    "riscv64": (64, "little"),
    "riscv32": (32, "little"),
    "ppc64le": (64, "little"),
    "ppc64": (64, "big"),
    "ppc": (32, "big"),
    "s390x": (64, "big"),
    "loongarch64": (64, "little"),
    "sparc64": (64, "big"),
    "mips64el": (64, "little"),
    "mips64": (64, "big"),
    "mipsel": (32, "little"),
    "mips": (32, "big"),
}
ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "i386": "x86",
    "i686": "x86",
    "i586": "x86",
}


def normalise_arch(name: str) -> str:
    """An architecture as the binary readers name it (`amd64` -> `x86_64`, `arm64` -> `aarch64`)."""
    lowered = name.strip().lower()
    return ARCH_ALIASES.get(lowered, lowered)


def host_platform() -> Platform:
    """The platform this Python runs on, in the loader's vocabulary."""
    platform = platform_of(sys.platform)
    if platform is None:
        raise PackagingError(
            "unknown-platform",
            f"cannot tell the plugin platform of this host ({sys.platform}, {_host.machine()})",
            hint="pass --platform linux|macos|windows",
        )
    return platform


def platform_of(sys_platform: str) -> Platform | None:
    """The loader's name for a `sys.platform` value, or None for a platform it has no plugins for.

    Also what the probe's child (which imports nothing of this package) must agree with.
    """
    if sys_platform.startswith("linux"):
        return "linux"
    if sys_platform == "darwin":
        return "macos"
    if sys_platform in ("win32", "cygwin"):
        return "windows"
    return None


def host_arch() -> str:
    return normalise_arch(_host.machine() or "unknown")


@dataclass(frozen=True)
class Target:
    """The platform and architecture the plugins must load on."""

    platform: Platform
    arch: str

    @classmethod
    def of(cls, platform: Platform, arch: str | None = None) -> Target:
        """A target from settings and flags; `arch` defaults to the host's. Raises on unknown arches."""
        chosen = normalise_arch(arch) if arch else host_arch()
        if chosen not in ARCHITECTURES:
            raise PackagingError(
                "bad-arch",
                f"unknown architecture {arch!r}",
                hint="use one of: " + ", ".join(ARCHITECTURES),
            )
        return cls(platform, chosen)

    @classmethod
    def host(cls) -> Target:
        """This machine: what it can load, resolve dependencies for, and probe."""
        return cls.of(host_platform())

    @property
    def bits(self) -> int:
        return ARCHITECTURES[self.arch][0]

    @property
    def endianness(self) -> str:
        return ARCHITECTURES[self.arch][1]

    @property
    def is_host(self) -> bool:
        """True when libraries for this target can be resolved (and probed) on this machine."""
        return self.platform == platform_of(sys.platform) and self.arch == host_arch()

    def describe(self) -> str:
        return f"{self.platform} {self.arch}"
