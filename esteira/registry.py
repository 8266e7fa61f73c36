"""The model registry: immutable numbered versions and movable aliases, on plain storage.

Layout under ``models/<name>/`` (keys relative to the storage root)::

    claims/v<N>              one per version number ever handed out (put_if_absent)
    v<N>/model.joblib        the model, plus any extra files (e.g. reference.json)
    v<N>/metadata.json       what the training pipeline recorded, plus version/created_at
    v<N>/_COMPLETE           commit marker, written last
    aliases/<seq:08d>.json   append-only log of alias moves

Registration protocol: claim the next free number with ``put_if_absent`` (on a
conflict try the next one), upload the files, then write ``_COMPLETE``. Only
versions with the marker exist for readers, so two concurrent registrations get
distinct numbers and a registration that dies halfway leaves nothing visible;
its number stays burned (a gap in the sequence), because reusing it could mix
files from two registrations.

Aliases (``production``, ``staging``, any ``[a-z]+``) are replayed from the log;
each move is appended with ``put_if_absent`` at the next sequence number and
recomputed on a conflict, so concurrent moves are serialised, never lost.

Lost answers: every write is unique to its writer (a claim, the marker and an alias
move carry a fresh ``token``; files live under a claimed number), so the storage's
idempotent ``put_if_absent`` knows a retried PUT that meets its own object. A
registration therefore either returns the version it committed or fails with
nothing visible; an alias move is appended once, never twice.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esteira.errors import EsteiraError, StorageError
from esteira.storage import LocalStorage, S3Storage

if TYPE_CHECKING:
    from esteira.config import Settings

Storage = LocalStorage | S3Storage

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
COMPLETE_MARKER = "_COMPLETE"
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
DEFAULT_ALIAS = "production"

_ALIAS_RE = re.compile(r"[a-z]+")
_VERSION_RE = re.compile(r"v?(\d+)")
_FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class ModelVersion:
    """One committed, immutable version of a model."""

    name: str
    version: int
    uri: str
    metadata: dict[str, Any]
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AliasMove:
    """One event of the alias log: ``alias`` now points at ``version`` (was ``previous``)."""

    alias: str
    version: int
    previous: int | None
    reason: str
    time: str
    actor: str
    kind: str = "move"  # "move" or "rollback"; rollback pops the alias' stack
    seq: int = 0


_MOVE_FIELDS = {f.name for f in fields(AliasMove)} - {"seq"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _token() -> str:
    """A unique token for one write (how a retry tells its own object from another's)."""
    return uuid.uuid4().hex


def _actor() -> str:
    """Who did it: user@host (in a pipeline pod the host is the pod name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _parse_version(text: str) -> int | None:
    """3 for "3" or "v3"; None for anything else."""
    match = _VERSION_RE.fullmatch(text)
    return int(match.group(1)) if match else None


def _version_dir(part: str) -> int | None:
    """3 for the directory name "v3"; None for anything else."""
    return _parse_version(part) if part.startswith("v") else None


def model_names(storage: Storage) -> list[str]:
    """Names of the models that have at least one committed version."""
    names = set()
    for key in storage.list("models"):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == COMPLETE_MARKER and _version_dir(parts[2]) is not None:
            names.add(parts[1])
    return sorted(names)


class Registry:
    """Versions and aliases of one model on a storage."""

    def __init__(self, storage: Storage, name: str) -> None:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
            raise EsteiraError(
                "model.name",
                f"{name!r} is not a valid model name",
                "use lowercase letters, digits and '-' (a Kubernetes name)",
            )
        self.storage = storage
        self.name = name
        self.base = f"models/{name}"

    # ---- keys ----------------------------------------------------------------------------
    def _vkey(self, version: int, filename: str = "") -> str:
        key = f"{self.base}/v{version}"
        return f"{key}/{filename}" if filename else key

    # ---- registration ----------------------------------------------------------------------
    def register(
        self,
        files: dict[str, bytes],
        metadata: dict[str, Any],
        version_files: Callable[[int, dict[str, Any]], dict[str, bytes]] | None = None,
    ) -> ModelVersion:
        """Store a new immutable version and return it.

        ``files`` maps plain file names to bytes and must hold ``model.joblib`` as the only
        pickle-like file (KServe's sklearn runtime loads exactly one). ``metadata`` is stored as
        ``metadata.json`` with ``version`` and ``created_at`` added. ``version_files(number,
        metadata)`` adds files that name the version (the model card), before the commit.
        """
        _check_files(files)
        version = self._claim()
        meta = {**metadata, "version": version, "created_at": _now()}
        body = _to_json(meta, field_name="metadata")
        if version_files is not None:
            files = {**files, **version_files(version, meta)}
            _check_files(files)
        for filename, data in sorted(files.items()):
            self._put_new(self._vkey(version, filename), data)
        self._put_new(self._vkey(version, METADATA_FILE), body)
        self._commit(version)
        return ModelVersion(self.name, version, self.version_uri(version), meta, [])

    def _claim(self) -> int:
        """Reserve the next version number; never hands the same number out twice."""
        claimed = [
            n
            for key in self.storage.list(f"{self.base}/claims")
            if (n := _parse_version(key.rsplit("/", 1)[-1])) is not None
        ]
        number = max(claimed, default=0) + 1
        note = _to_json(
            {"time": _now(), "actor": _actor(), "pid": os.getpid(), "token": _token()}, "claim"
        )
        for _ in range(_MAX_ATTEMPTS):
            if self.storage.put_if_absent(f"{self.base}/claims/v{number}", note):
                return number
            number += 1
        raise EsteiraError(
            f"models/{self.name}/claims",
            f"could not claim a version number after {_MAX_ATTEMPTS} attempts",
            "check the storage for a runaway registration loop",
        )

    def _put_new(self, key: str, data: bytes) -> None:
        if not self.storage.put_if_absent(key, data):
            raise EsteiraError(
                key,
                "already exists; registered versions are immutable",
                "register again: a fresh version number is claimed every time",
            )

    def _commit(self, version: int) -> None:
        """Write the marker that makes ``version`` visible; it is the last write.

        The marker holds a fresh token. If the storage gives up (its answers keep getting
        lost), the marker is read back once: this token there means committed; no marker
        means nothing is visible; anything else cannot be decided and the error says so.
        """
        key = self._vkey(version, COMPLETE_MARKER)
        marker = _to_json({"time": _now(), "token": _token()}, "marker")
        try:
            self._put_new(key, marker)
        except StorageError as exc:
            try:
                there = self.storage.get_bytes(key) if self.storage.exists(key) else None
            except StorageError:
                raise StorageError(
                    f"models/{self.name}/v{version}",
                    f"the commit of v{version} is unknown: {exc.message}",
                    f"check `esteira models list {self.name}` once the storage is back; "
                    f"if v{version} is listed it is registered, else register again",
                ) from None
            if there != marker:
                raise

    # ---- reading ---------------------------------------------------------------------------
    def _committed(self) -> list[int]:
        numbers = []
        for key in self.storage.list(self.base):
            parts = key.split("/")
            if len(parts) == 4 and parts[3] == COMPLETE_MARKER:
                number = _version_dir(parts[2])
                if number is not None:
                    numbers.append(number)
        return sorted(numbers)

    def _load(self, version: int, aliases: dict[str, int]) -> ModelVersion:
        meta = json.loads(self.storage.get_bytes(self._vkey(version, METADATA_FILE)))
        names = sorted(a for a, v in aliases.items() if v == version)
        return ModelVersion(self.name, version, self.version_uri(version), meta, names)

    def versions(self) -> list[ModelVersion]:
        """All committed versions, oldest first."""
        aliases = self.aliases()
        return [self._load(v, aliases) for v in self._committed()]

    def resolve(self, ref: int | str, aliases: dict[str, int] | None = None) -> int:
        """The committed version number behind ``ref`` (int, "3", "v3" or an alias)."""
        committed = self._committed()
        number = ref if isinstance(ref, int) else _parse_version(str(ref).strip())
        aliases = self.aliases() if aliases is None else aliases
        if number is None and isinstance(ref, str) and ref in aliases:
            number = aliases[ref]
        if number is None or number not in committed:
            raise self._missing(ref, committed, aliases)
        return number

    def _missing(
        self, ref: int | str, committed: list[int], aliases: dict[str, int]
    ) -> EsteiraError:
        have = ", ".join(f"v{n}" for n in committed) or "none"
        names = ", ".join(f"{a}->v{v}" for a, v in sorted(aliases.items())) or "none"
        return EsteiraError(
            f"model {self.name!r} ref {ref!r}",
            f"no such version or alias (versions: {have}; aliases: {names})",
            "pass an existing version (3 or v3) or alias, or register a model first",
        )

    def get(self, ref: int | str) -> ModelVersion:
        """The committed version behind ``ref`` with its metadata and aliases."""
        aliases = self.aliases()
        return self._load(self.resolve(ref, aliases), aliases)

    def files(self, ref: int | str) -> list[str]:
        """File names stored in a version (without the commit marker)."""
        prefix = self._vkey(self.resolve(ref))
        keys = self.storage.list(prefix)
        return [k[len(prefix) + 1 :] for k in keys if not k.endswith(f"/{COMPLETE_MARKER}")]

    def read_file(self, ref: int | str, filename: str) -> bytes:
        """The bytes of one file of a version."""
        version = self.resolve(ref)
        key = self._vkey(version, filename)
        if filename == COMPLETE_MARKER or not self.storage.exists(key):
            raise EsteiraError(
                f"model {self.name!r} v{version} file {filename!r}",
                f"not in this version (files: {', '.join(self.files(version))})",
                "ask for one of the listed files",
            )
        return self.storage.get_bytes(key)

    def download(self, ref: int | str, dest_dir: str | Path) -> Path:
        """Write every file of a version into ``dest_dir`` and return it."""
        version = self.resolve(ref)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for filename in self.files(version):
            target = dest / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.storage.get_bytes(self._vkey(version, filename)))
        return dest

    def version_uri(self, ref: int | str) -> str:
        """Where the version lives: the ``storageUri`` KServe reads (s3://...) or a local path."""
        version = ref if isinstance(ref, int) else self.resolve(ref)
        return self.storage.uri(self._vkey(version))

    # ---- aliases ---------------------------------------------------------------------------
    def history(self, alias: str | None = None) -> list[AliasMove]:
        """Alias moves, oldest first; only those of ``alias`` when given."""
        moves = []
        for key in self.storage.list(f"{self.base}/aliases"):
            seq = key.rsplit("/", 1)[-1].removesuffix(".json")
            if not (key.endswith(".json") and seq.isdigit()):
                continue
            event = json.loads(self.storage.get_bytes(key))
            known = {k: v for k, v in event.items() if k in _MOVE_FIELDS}
            moves.append(AliasMove(**{**known, "seq": int(seq)}))
        moves.sort(key=lambda m: m.seq)
        return [m for m in moves if alias is None or m.alias == alias]

    def aliases(self) -> dict[str, int]:
        """Current alias -> version, replayed from the log."""
        return {alias: stack[-1] for alias, stack in _stacks(self.history()).items() if stack}

    def set_alias(self, alias: str, version: int | str, reason: str = "") -> AliasMove:
        """Point ``alias`` at a committed version (appends to the alias log)."""
        _check_alias(alias)
        number = self.resolve(version)

        def build(stack: list[int]) -> tuple[int, str]:
            return number, "move"

        return self._append(alias, reason or f"set {alias} to v{number}", build)

    def rollback_target(self, alias: str = DEFAULT_ALIAS) -> int:
        """The version a rollback of ``alias`` would move to (the previous different one)."""
        _check_alias(alias)
        return self._pop_target(alias, _stacks(self.history(alias)).get(alias, []))

    def rollback(
        self, alias: str = DEFAULT_ALIAS, reason: str = "", *, expect: int | None = None
    ) -> AliasMove:
        """Move ``alias`` back to the previous different version it pointed at.

        Rollbacks pop: v1 -> v2 -> v3, rollback gives v2, rollback again gives v1. With
        ``expect``, fail instead of moving when someone changed the alias meanwhile.
        """
        _check_alias(alias)

        def build(stack: list[int]) -> tuple[int, str]:
            target = self._pop_target(alias, stack)
            if expect is not None and target != expect:
                raise EsteiraError(
                    f"model {self.name!r} alias {alias!r}",
                    f"changed while rolling back: target is now v{target}, expected v{expect}",
                    "check `esteira models history` and roll back again",
                )
            return target, "rollback"

        return self._append(alias, reason or f"rollback {alias}", build)

    def _pop_target(self, alias: str, stack: list[int]) -> int:
        if len(stack) < 2:
            current = f"v{stack[-1]}" if stack else "nothing"
            raise EsteiraError(
                f"model {self.name!r} alias {alias!r}",
                f"has no previous version to roll back to (it points at {current})",
                f"promote a version instead: esteira models promote {self.name} VERSION",
            )
        return stack[-2]

    def _append(
        self, alias: str, reason: str, build: Callable[[list[int]], tuple[int, str]]
    ) -> AliasMove:
        """Append one alias event computed from the current state; recompute on a conflict."""
        for _ in range(_MAX_ATTEMPTS):
            moves = self.history()
            stack = _stacks(moves).get(alias, [])
            version, kind = build(stack)
            seq = max((m.seq for m in moves), default=0) + 1
            move = AliasMove(
                alias=alias,
                version=version,
                previous=stack[-1] if stack else None,
                reason=reason,
                time=_now(),
                actor=_actor(),
                kind=kind,
                seq=seq,
            )
            # the token makes this write unique, so a retried PUT knows its own event
            event = {k: v for k, v in asdict(move).items() if k != "seq"} | {"token": _token()}
            if self.storage.put_if_absent(
                f"{self.base}/aliases/{seq:08d}.json", _to_json(event, "alias")
            ):
                return move
        raise EsteiraError(
            f"models/{self.name}/aliases",
            f"could not append an alias move after {_MAX_ATTEMPTS} attempts",
            "retry; something is writing alias moves in a loop",
        )


def _stacks(moves: list[AliasMove]) -> dict[str, list[int]]:
    """Replay the log into one stack per alias: moves push, rollbacks pop."""
    stacks: dict[str, list[int]] = {}
    for move in moves:
        stack = stacks.setdefault(move.alias, [])
        if move.kind == "rollback" and len(stack) >= 2 and stack[-2] == move.version:
            stack.pop()
        elif not stack or stack[-1] != move.version:
            stack.append(move.version)
    return stacks


def _check_alias(alias: str) -> None:
    if not _ALIAS_RE.fullmatch(alias or ""):
        raise EsteiraError(
            "alias",
            f"{alias!r} is not a valid alias",
            "use lowercase letters only, e.g. production or staging",
        )


def _check_files(files: dict[str, bytes]) -> None:
    """Plain names, ``model.joblib`` present and the only pickle-like file."""
    for filename, data in files.items():
        if not _FILENAME_RE.fullmatch(filename) or filename in (METADATA_FILE, COMPLETE_MARKER):
            raise EsteiraError(
                f"files[{filename!r}]",
                f"not an allowed file name ({METADATA_FILE} is written by the registry)",
                "use a plain name like reference.json (letters, digits, '.', '_', '-')",
            )
        if not isinstance(data, bytes | bytearray):
            raise EsteiraError(f"files[{filename!r}]", "content must be bytes", "pass bytes")
    pickles = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES))
    if MODEL_FILE not in files or pickles != [MODEL_FILE]:
        raise EsteiraError(
            "files",
            f"need exactly one model file named {MODEL_FILE} (got model files: {pickles or 'none'})",
            "KServe's sklearn runtime loads exactly one .joblib/.pkl/.pickle; pass only model.joblib",
        )


def _to_json(value: dict[str, Any], field_name: str) -> bytes:
    """Strict JSON (no NaN/Infinity), so every reader can parse what the registry wrote."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise EsteiraError(
            field_name,
            f"is not JSON-serialisable ({exc})",
            "use str, int, float (finite), bool, None, list and dict only",
        ) from None


def read_model_dir(path: str | Path, name: str) -> ModelVersion:
    """The version a downloaded model directory holds (``metadata.json`` next to
    ``model.joblib``, as KServe's storage initializer leaves a version in /mnt/models)."""
    folder = Path(path)
    for filename in (MODEL_FILE, METADATA_FILE):
        if not (folder / filename).is_file():
            raise EsteiraError(
                f"--model_dir {folder}",
                f"has no {filename}",
                "point it at a downloaded registry version (model.joblib + metadata.json)",
            )
    try:
        meta = json.loads((folder / METADATA_FILE).read_text())
        number = int(meta["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EsteiraError(
            f"--model_dir {folder}/{METADATA_FILE}",
            f"is not a registry version's metadata ({type(exc).__name__}: {exc})",
            "download the version again",
        ) from None
    return ModelVersion(name, number, str(folder), meta, [])


def registry_for(settings: Settings) -> Registry:
    """The registry of the configured model (``model.name``) on the configured storage."""
    from esteira.storage import open_storage

    return Registry(open_storage(settings.storage), settings.model.name)


def production_version(registry: Registry, ref: int | str = DEFAULT_ALIAS) -> ModelVersion:
    """The version behind ``ref``; a clear error when nothing was trained and promoted yet."""
    if ref == DEFAULT_ALIAS and DEFAULT_ALIAS not in registry.aliases():
        raise EsteiraError(
            f"model {registry.name!r}",
            "has no production version",
            "run `make run` first (it trains, registers and promotes a model)",
        )
    return registry.get(ref)
