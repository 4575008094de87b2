"""Print constraints.txt from the running environment: every installed distribution but rap
itself, name==version, with a local version label (torch's +cpu) dropped so the same line
matches the wheel a fresh machine installs."""

from __future__ import annotations

import importlib.metadata as metadata
import re

HEADER = """\
# The exact set rap's suite and CI run with (Python 3.11, CPU): `make install` installs
# with `-c constraints.txt`. pyproject.toml states the ranges rap works with; this file only
# fixes the tested versions inside them. Regenerate after an upgrade that passed `make test`:
#   make constraints"""


def main() -> None:
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or re.sub(r"[-_.]+", "-", name).lower() in ("rap", "pip", "setuptools"):
            continue
        pins[name.lower()] = f"{name}=={dist.version.split('+')[0]}"
    print(HEADER)
    print("\n".join(pins[k] for k in sorted(pins)))


if __name__ == "__main__":
    main()
