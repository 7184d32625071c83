"""Moving a pre-#272 flat plugin directory into the directory-per-plugin layout.

Before StreamKit's #272 the loader read libraries straight from `P/native/`; now it skips them
("Bare plugin file found in native directory"). Each bare library moves into `P/native/<id>/`:

- the id is that of the source whose `artifact` has the same file name (any platform's naming),
  else the library stem, as the server's upload names a bundle (`libpocket_tts.so` ->
  `pocket_tts`);
- a library with a source gets a generated `plugin.yml`; one without keeps its old
  `<stem>.plugin.yml` (or `.yaml`), renamed to `plugin.yml`, when there is one;
- a bare library whose bundle already holds a byte-identical copy is a leftover: it is removed;
- a bundle that exists with anything else in it is never touched: that library is a conflict,
  and a plan with any conflict changes nothing at all;
- versioned names (`libfoo.so.1`) and manifests without a library stay where they are and are
  reported: the loader never opens them, but something may still need them at run time.

Every bundle is assembled in `P/.plugin-packaging/staging/` (hard links, so nothing is copied on
one file system) and renamed into place in one step; the bare files are removed only after
that. A run killed half way leaves either the old bare file or the new bundle plus a bare copy
that the next run recognises as a leftover.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from plugin_packaging.contract import (
    MANIFEST_NAME,
    is_native_library_name,
    library_stem,
    path_component_problem,
)
from plugin_packaging.errors import PackagingError, display_path, printable
from plugin_packaging.settings import Settings
from plugin_packaging.sources.scan import PluginSource
from plugin_packaging.target import PLATFORMS

#: Old per-library manifest names beside a bare library, best first (the loader's lookup order).
LEGACY_MANIFEST_SUFFIXES = (".plugin.yml", ".plugin.yaml")

MoveAction = Literal["move", "drop-duplicate", "conflict"]


@dataclass(frozen=True)
class LibraryMove:
    """What happens to one bare library."""

    library: Path
    action: MoveAction
    #: The bundle id (directory name), when one could be chosen.
    plugin_id: str | None
    #: Where the plugin id comes from: a source declaration, or "library stem".
    id_origin: str
    #: The generated `plugin.yml` text (a known source), else None.
    manifest_text: str | None = None
    #: The old `<stem>.plugin.yml` that becomes `plugin.yml` (no source known), else None.
    manifest_from: Path | None = None
    #: Old manifests removed with the library: superseded by a generated one, or already installed.
    superseded: tuple[Path, ...] = ()
    #: Why it cannot move (a conflict), or a note about the result.
    problem: PackagingError | None = None
    note: str | None = None

    @property
    def target(self) -> Path | None:
        return self.library.parent / self.plugin_id if self.plugin_id is not None else None


@dataclass(frozen=True)
class LeftFile:
    """A file in `P/native` that stays where it is, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class MigrationPlan:
    """Every move, and every file left alone; `blocked` when anything conflicts."""

    native_dir: Path
    moves: tuple[LibraryMove, ...] = ()
    left: tuple[LeftFile, ...] = ()
    source_errors: tuple[PackagingError, ...] = ()

    @property
    def blocked(self) -> bool:
        return any(move.action == "conflict" for move in self.moves)

    @property
    def empty(self) -> bool:
        return not self.moves


@dataclass(frozen=True)
class MigrationResult:
    """The plan, and what was carried out of it."""

    plan: MigrationPlan
    done: tuple[LibraryMove, ...] = ()
    dry_run: bool = False
    repairs: tuple[str, ...] = ()
    #: A failure while carrying the plan out (the moves before it are done, the rest are not).
    error: PackagingError | None = None

    @property
    def failed(self) -> bool:
        return self.plan.blocked or self.error is not None


# --- planning --------------------------------------------------------------------------------


def plan_migration(settings: Settings) -> MigrationPlan:
    """Read `P/native` and decide where each bare library goes; change nothing."""
    native = settings.native_dir
    try:
        names = sorted(os.listdir(native))
    except FileNotFoundError:
        return MigrationPlan(native)
    except NotADirectoryError:
        raise PackagingError(
            "native-dir-not-directory", "is not a directory", native, hint="move the file away"
        ) from None
    except OSError as exc:
        raise PackagingError(
            "native-dir-unreadable", f"cannot be listed ({exc.strerror or exc})", native
        ) from None
    libraries = [n for n in names if is_native_library_name(n) and _is_file(native / n)]
    if not libraries:
        return MigrationPlan(native, left=tuple(_left_files(native, names, set(), [])))

    from plugin_packaging.sources.artifacts import artifact_path
    from plugin_packaging.sources.scan import scan_sources

    scan = scan_sources(settings)
    # A library is matched by file name against every platform's naming of each artifact, so a
    # macOS or Windows flat directory migrates the same way.
    by_file_name: dict[str, list[PluginSource]] = {}
    for source in scan.sources:
        for platform in PLATFORMS:
            file_name = artifact_path(source, platform).name
            if source not in by_file_name.setdefault(file_name, []):
                by_file_name[file_name].append(source)
    moves = [
        _plan_move(settings, native / name, by_file_name.get(name, []), scan.errors)
        for name in libraries
    ]
    moves = _refuse_shared_targets(moves)
    used_manifests = {p for m in moves for p in (m.manifest_from, *m.superseded) if p is not None}
    left = _left_files(native, names, used_manifests, libraries)
    return MigrationPlan(native, tuple(moves), tuple(left), scan.errors)


def _plan_move(
    settings: Settings,
    library: Path,
    sources: list[PluginSource],
    source_errors: Sequence[PackagingError],
) -> LibraryMove:
    name = library.name
    legacy = _legacy_manifests(library)
    if len(sources) > 1:
        origins = " and ".join(s.origin for s in sources)
        return _conflict(
            library,
            None,
            "ambiguous source",
            f"{name} is the artifact of {origins}",
            "give each plugin its own library name",
        )
    if sources:
        source = sources[0]
        plugin_id, id_origin = source.id, source.origin
    else:
        plugin_id, id_origin = library_stem(name), "library stem"
        if source_errors:
            # A broken declaration may be this library's: a stem id could then differ from the
            # real one, and a later install would add a second bundle of the same kind.
            return _conflict(
                library,
                None,
                id_origin,
                f"no source declares {name}, and some source "
                "declarations have errors (listed below)",
                "fix them, then run again",
            )
        problem = path_component_problem(plugin_id)
        if problem:
            return _conflict(
                library,
                None,
                id_origin,
                f"its stem {plugin_id!r} {problem}",
                "rename the file to lib<name>.so (a plain name), then run again",
            )
    target = library.parent / plugin_id
    if os.path.lexists(target):
        return _existing_bundle(library, plugin_id, id_origin, target, legacy)
    if sources:
        try:
            text = _generated_manifest(settings, sources[0], name)
        except PackagingError as exc:
            return LibraryMove(library, "conflict", plugin_id, id_origin, problem=exc)
        return LibraryMove(
            library, "move", plugin_id, id_origin, manifest_text=text, superseded=tuple(legacy)
        )
    if legacy:
        return LibraryMove(library, "move", plugin_id, id_origin, manifest_from=legacy[0])
    return LibraryMove(
        library,
        "move",
        plugin_id,
        id_origin,
        note="no plugin.yml: no source declares this library and no manifest lies beside it",
    )


def _existing_bundle(
    library: Path, plugin_id: str, id_origin: str, target: Path, legacy: list[Path]
) -> LibraryMove:
    """The bundle directory is taken: a leftover when it holds this exact library, else a conflict."""
    installed = target / library.name
    if target.is_dir() and _is_file(installed) and _same_contents(library, installed):
        has_manifest = (target / MANIFEST_NAME).is_file()
        note = (
            None
            if has_manifest or not legacy
            else f"{target.name}/ has no plugin.yml; the old manifest stays"
        )
        return LibraryMove(
            library,
            "drop-duplicate",
            plugin_id,
            id_origin,
            superseded=tuple(legacy) if has_manifest else (),
            note=note,
        )
    if not target.is_dir():
        detail = f"native/{plugin_id} already exists and is not a directory"
    elif _is_file(installed):
        detail = f"native/{plugin_id}/ already exists and holds a different {library.name}"
    else:
        detail = f"native/{plugin_id}/ already exists (without {library.name})"
    return _conflict(
        library,
        plugin_id,
        id_origin,
        detail,
        f"keep one of them: delete {library.name} or move native/{plugin_id} away, then run again",
    )


def _refuse_shared_targets(moves: list[LibraryMove]) -> list[LibraryMove]:
    """Two libraries headed for one new bundle (`libx.so` and `libx.dylib`) both become conflicts."""
    heads: dict[str, list[LibraryMove]] = {}
    for move in moves:
        if move.action == "move" and move.plugin_id is not None:
            heads.setdefault(move.plugin_id, []).append(move)
    result = []
    for move in moves:
        sharing = heads.get(move.plugin_id or "", [])
        if move.action == "move" and len(sharing) > 1:
            others = ", ".join(m.library.name for m in sharing if m is not move)
            move = _conflict(
                move.library,
                move.plugin_id,
                move.id_origin,
                f"{others} would move into native/{move.plugin_id}/ as well; the loader "
                "would open both",
                "keep only the library you want, then run again",
            )
        result.append(move)
    return result


def _conflict(
    library: Path, plugin_id: str | None, id_origin: str, message: str, hint: str
) -> LibraryMove:
    error = PackagingError("migrate-conflict", message, library, hint=hint)
    return LibraryMove(library, "conflict", plugin_id, id_origin, problem=error)


def _legacy_manifests(library: Path) -> list[Path]:
    """`<stem>.plugin.yml` / `.yaml` beside a bare library (`<stem>` without one leading `lib`)."""
    stem = Path(library.name).stem
    stem = stem[3:] if stem.startswith("lib") else stem
    found = []
    for suffix in LEGACY_MANIFEST_SUFFIXES:
        candidate = library.parent / f"{stem}{suffix}"
        if _is_file(candidate):
            found.append(candidate)
    return found


def _generated_manifest(settings: Settings, source: PluginSource, entrypoint: str) -> str:
    """The installed manifest for `source`, exactly as copy-plugins-native would write it."""
    from plugin_packaging.sources.cargo import read_crate
    from plugin_packaging.sources.plugin_yml import generate_manifest, render_manifest

    crate = (
        read_crate(source.crate_dir, stop_at=settings.root)
        if source.crate_dir is not None
        else None
    )
    manifest = generate_manifest(
        source.data,
        origin=source.origin,
        origin_path=source.manifest_path or Path(source.origin),
        entrypoint=entrypoint,
        crate=crate,
        rule_overrides=settings.rules,
    )
    return render_manifest(manifest, settings.template)


def _left_files(
    native: Path, names: list[str], used: set[Path], libraries: list[str]
) -> list[LeftFile]:
    """Files in native/ that stay: versioned libraries and manifests that belong to nothing moved."""
    left = []
    library_set = set(libraries)
    for name in names:
        path = native / name
        if path in used or name in library_set:
            continue
        if not _is_file(path):
            unusable = _not_a_library_file(path) if is_native_library_name(name) else None
            if unusable:
                # Named like a library, so the loader counts it as a bare file, but there is no
                # file to move: say so rather than report "nothing to migrate".
                left.append(
                    LeftFile(path, f"{unusable}, not a library file; nothing to move: delete it")
                )
            continue
        base, _, version = name.partition(".so.")
        if version[:1].isdigit() and not is_native_library_name(name):
            sibling = f"{base}.so"
            if sibling in library_set:
                reason = f"versioned copy of {sibling}; the loader never opens it: delete it"
            else:
                reason = (
                    "versioned name, never opened by the loader; if a plugin needs it at run "
                    "time, put it in that plugin's bundle (RUNPATH $ORIGIN) or a system path"
                )
            left.append(LeftFile(path, reason))
        elif name.endswith(LEGACY_MANIFEST_SUFFIXES):
            left.append(LeftFile(path, "a manifest without a bare library beside it"))
    return left


def _not_a_library_file(path: Path) -> str | None:
    """What an entry named like a library is when it is neither a file nor a bundle directory."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symlink" if os.path.islink(path) else None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return None  # a bundle directory with an odd name: the checker's business
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _is_file(path: Path) -> bool:
    """A regular file, or a symlink to one (the loader follows symlinks)."""
    return os.path.isfile(path)


def _same_contents(first: Path, second: Path) -> bool:
    import filecmp

    try:
        return filecmp.cmp(first, second, shallow=False)
    except OSError:
        return False


# --- carrying out ----------------------------------------------------------------------------


def migrate_plugins(
    settings: Settings,
    *,
    dry_run: bool = False,
    on_plan: Callable[[MigrationPlan], None] | None = None,
) -> MigrationResult:
    """Plan the migration and, unless `dry_run` or the plan is blocked, carry it out.

    `on_plan` sees the plan before anything changes (the task prints it there).
    """
    if dry_run or not settings.native_dir.is_dir():
        plan = plan_migration(settings)
        if on_plan is not None:
            on_plan(plan)
        return MigrationResult(plan, dry_run=dry_run)
    from plugin_packaging._fs.lock import DirectoryLock
    from plugin_packaging._fs.swap import recover_staging
    from plugin_packaging.output import tell_on_stderr

    with DirectoryLock(settings.state_dir, on_wait=tell_on_stderr):
        staging = settings.state_dir / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        repairs = tuple(recover_staging(staging, settings.native_dir))
        # Planned under the lock, so that no other run changes native/ between plan and moves.
        plan = plan_migration(settings)
        if on_plan is not None:
            on_plan(plan)
        if plan.blocked:
            return MigrationResult(plan, repairs=repairs)
        done: list[LibraryMove] = []
        error: PackagingError | None = None
        for move in plan.moves:
            try:
                _carry_out(move, staging)
            except OSError as exc:
                error = PackagingError(
                    "io-error",
                    f"could not move {move.library.name}: {exc.strerror or exc}",
                    Path(exc.filename) if exc.filename else move.library,
                    hint="fix the cause and run again; the moves before this one are done",
                )
                break
            except PackagingError as exc:
                error = exc
                break
            done.append(move)
        _record_owners(settings, done)
        return MigrationResult(plan, tuple(done), repairs=repairs, error=error)


def _record_owners(settings: Settings, done: list[LibraryMove]) -> None:
    """The bundles a migration created are this tool's: record them as this checkout's, so that
    copy-plugins-native may update them without `--adopt`. A state that cannot be saved only
    means they need `--adopt` later."""
    from plugin_packaging.install.state import Checkout, InstallState

    created = [move.plugin_id for move in done if move.action == "move" and move.plugin_id]
    if not created:
        return
    state = InstallState.load(settings.state_dir)
    checkout = Checkout.of(settings.root)
    for plugin_id in created:
        state.owners[plugin_id] = checkout
    try:
        state.save(settings.state_dir)
    except PackagingError:
        pass


def _carry_out(move: LibraryMove, staging: Path) -> None:
    from plugin_packaging._fs.swap import discard

    if move.action == "drop-duplicate":
        for path in (move.library, *move.superseded):
            _unlink(path)
        return
    target = move.target
    assert move.action == "move" and target is not None and move.plugin_id is not None
    staged = _stage(move, staging, target)
    try:
        # Never replace: rename() would silently take the place of an empty directory.
        if os.path.lexists(target):
            raise PackagingError(
                "migrate-conflict",
                f"native/{move.plugin_id} appeared while migrating; it was left untouched",
                target,
                hint="run migrate-plugins-native again to see the new plan",
            )
        os.rename(staged, target)
    finally:
        discard(staged)  # the operation's directory in staging (and the bundle, if not moved)
    for path in (
        move.library,
        *((move.manifest_from,) if move.manifest_from else ()),
        *move.superseded,
    ):
        _unlink(path)


def _stage(move: LibraryMove, staging: Path, target: Path) -> Path:
    """The complete bundle in the staging area: the library (linked, not copied) and plugin.yml."""
    import shutil

    from plugin_packaging._fs.swap import discard, new_bundle_dir

    assert move.plugin_id is not None  # only moves with an id are staged
    staged = new_bundle_dir(staging, move.plugin_id)
    try:
        placed = staged / move.library.name
        if os.path.islink(move.library):
            link = os.readlink(move.library)
            if not os.path.isabs(link):
                # Relative to its new home one level deeper, so it still names the same file.
                link = os.path.relpath(os.path.join(move.library.parent, link), target)
            os.symlink(link, placed)
        else:
            try:
                os.link(move.library, placed)
            except OSError:
                shutil.copy2(move.library, placed)  # another file system, or no hard links here
        if move.manifest_text is not None:
            with open(staged / MANIFEST_NAME, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(move.manifest_text)
            os.chmod(staged / MANIFEST_NAME, 0o644)
        elif move.manifest_from is not None:
            shutil.copyfile(move.manifest_from, staged / MANIFEST_NAME)
            os.chmod(staged / MANIFEST_NAME, 0o644)
    except BaseException:
        discard(staged)
        raise
    return staged


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- rendering -------------------------------------------------------------------------------


def render_migration_plan(plan: MigrationPlan) -> str:
    """The plan, one line per library and per file left alone."""
    where = display_path(plan.native_dir)
    if not plan.native_dir.is_dir():
        return f"nothing to migrate: {where} does not exist"
    if plan.empty:
        lines = [f"nothing to migrate: {where} holds no bare libraries"]
    else:
        lines = [f"migration plan for {where}:"]
    for move in plan.moves:
        lines.extend(_move_lines(move))
    for left in plan.left:
        lines.append(f"  leave     {printable(left.path.name)}: {left.reason}")
    for error in plan.source_errors:
        lines.append(error.render())
    return "\n".join(lines)


def _move_lines(move: LibraryMove) -> list[str]:
    name = printable(move.library.name)  # a hostile name must not break or forge report lines
    if move.action == "conflict":
        lines = [f"  CONFLICT  {name}"]
        assert move.problem is not None
        lines.extend("            " + line for line in move.problem.render().splitlines())
        return lines
    if move.action == "drop-duplicate":
        lines = [f"  remove    {name}: an identical copy is installed in {move.plugin_id}/"]
    else:
        head = f"  move      {name} -> {move.plugin_id}/{name}"
        if move.manifest_text is not None:
            head += f" + plugin.yml generated from {move.id_origin}"
        elif move.manifest_from is not None:
            head += f" + plugin.yml (was {move.manifest_from.name})"
        else:
            head += f" (id from the {move.id_origin})"
        lines = [head]
    for path in move.superseded:
        lines.append(
            f"            remove {printable(path.name)} (superseded by the bundle's plugin.yml)"
        )
    if move.note:
        lines.append(f"            note: {move.note}")
    return lines


def render_migration_result(result: MigrationResult) -> str:
    """What a run did, after its plan was printed."""
    plan = result.plan
    if result.dry_run:
        return "dry run: nothing was changed"
    lines = [f"repair: {line}" for line in result.repairs]
    if plan.blocked:
        conflicts = sum(1 for m in plan.moves if m.action == "conflict")
        lines.append(
            f"refused: {conflicts} conflict(s); nothing was changed (resolve them and run again)"
        )
        return "\n".join(lines)
    moved = sum(1 for m in result.done if m.action == "move")
    dropped = sum(1 for m in result.done if m.action == "drop-duplicate")
    if result.error is not None:
        lines.append(result.error.render())
    parts = [f"{moved} moved into bundles"] if moved else []
    if dropped:
        parts.append(f"{dropped} leftover copies removed")
    if parts:
        lines.append("migrated: " + ", ".join(parts))
    return "\n".join(lines)
