"""Bulk import of a tree of Baileys auth folders, sessions named by their path.

A tree template names what each path part below the root means: ``{namespace}/{session}``
maps ``auth_data/clinic_1/channel_3/`` (holding ``creds.json``) to namespace ``clinic_1``,
session ``channel_3``; ``{session}`` maps ``auth_data/channel_3/`` to session ``channel_3`` (the
namespace is given). A part may also hold literal text around a placeholder
(``wa-{session}``). Every folder is imported with :func:`.baileys_folder.import_folder`, so a
rerun gives the same result and a session already holding other creds is refused unless
``replace``; one folder's failure never stops the others.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._model import session_addr
from .._store import AuthStore
from ..errors import ConflictError, InvalidInputError, LeaseHeldError
from ._folder_names import CREDS_FILE
from .baileys_folder import ImportReport, import_folder

__all__ = ["TreeResult", "TreeTemplate", "find_folders", "import_tree"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAMES = ("namespace", "session")
# What one folder's import may fail with and still let the others go on. A store that is
# down (UnavailableError) or closed stops the whole run: every other folder would fail too.
_PER_FOLDER = (InvalidInputError, ConflictError, LeaseHeldError, OSError)


class TreeTemplate:
    """A parsed ``--tree`` template such as ``{namespace}/{session}``.

    Args:
        template: Path parts separated by ``/``; ``{session}`` must appear once,
            ``{namespace}`` at most once, each within a single part.

    Raises:
        InvalidInputError: an unknown or repeated placeholder, none, an empty part, a brace
            outside a placeholder.
    """

    __slots__ = ("_parts", "depth", "has_namespace", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        parts = template.strip("/").split("/")
        if not template.strip("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInputError(f"tree template {template!r}: empty, '.' or '..' path part")
        seen: list[str] = []
        self._parts = [self._compile(part, seen) for part in parts]
        if "session" not in seen:
            raise InvalidInputError(f"tree template {template!r} has no {{session}} placeholder")
        self.depth = len(parts)
        self.has_namespace = "namespace" in seen

    def _compile(self, part: str, seen: list[str]) -> re.Pattern[str]:
        pattern = ""
        # split() with a group alternates: literal, placeholder name, literal, ..., literal
        for i, piece in enumerate(_PLACEHOLDER.split(part)):
            if i % 2 == 0:
                if "{" in piece or "}" in piece:
                    raise InvalidInputError(f"tree template {self.template!r}: unbalanced brace")
                pattern += re.escape(piece)
            elif piece not in _NAMES:
                raise InvalidInputError(
                    f"tree template {self.template!r}: unknown placeholder {{{piece}}} "
                    "(known: {namespace}, {session})"
                )
            elif piece in seen:
                raise InvalidInputError(f"tree template {self.template!r}: {{{piece}}} twice")
            else:
                seen.append(piece)
                pattern += f"(?P<{piece}>.+)"
        return re.compile(pattern)

    def names(self, relative: Path, namespace: str) -> tuple[str, str]:
        """``(namespace, session)`` of a folder at ``relative`` below the root, validated.

        Args:
            relative: The folder's path relative to the root.
            namespace: The namespace when the template has no ``{namespace}``.

        Raises:
            InvalidInputError: the path does not match the template, or a name it gives is
                not a valid namespace or session id.
        """
        parts = relative.parts
        found: dict[str, str] = {"namespace": namespace}
        if len(parts) != self.depth:
            raise InvalidInputError(
                f"{len(parts)} path part(s) below the root, the template {self.template!r} "
                f"has {self.depth}"
            )
        for part, pattern in zip(parts, self._parts, strict=True):
            m = pattern.fullmatch(part)
            if m is None:
                raise InvalidInputError(f"{part!r} does not match the template {self.template!r}")
            found.update(m.groupdict())
        addr = session_addr(found["namespace"], found["session"])
        return addr.namespace, addr.session_id


def find_folders(root: Path) -> Iterator[Path]:
    """Every folder below ``root`` (itself included) that holds ``creds.json``, sorted.

    Symbolic links to folders are not followed (a loop would never end).
    """
    for top, dirs, files in os.walk(root):
        dirs.sort()
        if CREDS_FILE in files and (Path(top) / CREDS_FILE).is_file():
            yield Path(top)


@dataclass(frozen=True, slots=True)
class TreeResult:
    """The outcome of one folder of the tree.

    Attributes:
        folder: The folder, relative to the root.
        namespace: The namespace it maps to (``None`` when the path gave no valid name).
        session_id: The session it maps to (``None`` likewise).
        report: What the import did (``None`` when it failed).
        error: Why it failed (``None`` when it was imported).
    """

    folder: Path
    namespace: str | None
    session_id: str | None
    report: ImportReport | None = None
    error: str | None = None


async def import_tree(
    store: AuthStore,
    root: str | os.PathLike[str],
    template: TreeTemplate,
    *,
    namespace: str = "default",
    **options: Any,
) -> AsyncIterator[TreeResult]:
    """Import every Baileys folder below ``root``, one :class:`TreeResult` per folder, in order.

    Args:
        store: An opened store.
        root: The tree's root folder.
        template: How a folder's path names its namespace and session.
        namespace: The namespace when the template has no ``{namespace}``.
        **options: Passed to :func:`.baileys_folder.import_folder` for every folder
            (``flavour``, ``replace``, ``skip_unknown``, ``extra_types``, ``batch_size``).

    Raises:
        InvalidInputError: ``root`` holds no Baileys folder.
        StoreError: a failure of the store itself (down, closed): the run stops there.
    """
    base = Path(root)
    found = False
    for folder in find_folders(base):
        found = True
        relative = folder.relative_to(base)
        try:
            ns, sid = template.names(relative, namespace)
        except InvalidInputError as exc:
            yield TreeResult(relative, None, None, error=str(exc))
            continue
        try:
            report = await import_folder(store, folder, sid, namespace=ns, **options)
        except _PER_FOLDER as exc:
            yield TreeResult(relative, ns, sid, error=" ".join(str(exc).split()))
            continue
        yield TreeResult(relative, ns, sid, report=report)
    if not found:
        raise InvalidInputError(f"no Baileys auth folder ({CREDS_FILE}) below {base}")
