"""Every component family. Importing this package imports each module under it, and each module's
`@register` decorators fill the registry, so adding a component is adding one file (torch-free)."""

import importlib
import pkgutil

for _info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    if not _info.name.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_info.name)
