"""The GitHub emulator's Git database: a real bare repository behind the Git endpoints.

GitHub keeps a repository's objects where ``git push`` and ``git fetch`` reach them, and the
REST API's Git database (blobs, trees, commits, refs) and commit listings read and write the
same objects. So does this backend: the emulator is given the path of the test's bare
``origin`` and every object it creates lands there (``git fetch`` brings it), every commit
somebody pushes is listed and verified by the API.

Signing is copied from GitHub: a commit created through ``POST git/commits`` by an
installation token with no author, committer or signature given is authored by the token's
bot, committed by ``GitHub <noreply@github.com>`` (the ``web-flow`` account) and signed with a
key only the server holds (here an HMAC key in place of GitHub's PGP key, stored the way git
stores any signature: a ``gpgsig`` header). Everything else is unsigned, or carries a
signature that does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler import git

WEB_FLOW = {"login": "web-flow", "id": 19864447, "type": "User"}
GITHUB_COMMITTER = ("GitHub", "noreply@github.com")
_BEGIN, _END = "-----BEGIN PGP SIGNATURE-----", "-----END PGP SIGNATURE-----"
_PERSON = re.compile(r"^(?P<name>.*) <(?P<email>[^>]*)> (?P<epoch>-?\d+) (?P<tz>[+-]\d{4})$")
_NOREPLY = re.compile(r"^(?:(?P<id>\d+)\+)?(?P<login>[^@]+)@users\.noreply\.github\.com$")
BLOB_MODES = ("100644", "100755", "120000", "160000")


class GitDatabaseError(Exception):
    """A request GitHub refuses (422 unless ``status`` says otherwise)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    when: datetime

    def header(self) -> str:
        return f"{self.name} <{self.email}> {int(self.when.timestamp())} +0000"

    def json(self) -> dict[str, str]:
        stamp = self.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"name": self.name, "email": self.email, "date": stamp}


@dataclass(frozen=True)
class StoredCommit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str
    signature: str | None  # the armored signature, as git stores it
    payload: str  # what was signed: the commit without its signature header


def noreply_email(user: dict[str, object]) -> str:
    return f"{user['id']}+{user['login']}@users.noreply.github.com"


class GitDatabase:
    """One bare repository and the server's signing key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._key = secrets.token_bytes(32)  # GitHub's private key: never leaves the server

    # ------------------------------------------------------------------ objects
    def write_blob(self, content: bytes) -> str:
        return (
            git.run(self.root, "hash-object", "-w", "--stdin", input_bytes=content).decode().strip()
        )

    def kind(self, sha: str) -> str | None:
        done = git.call(self.root, "cat-file", "-t", "--end-of-options", sha)
        return done.text() if done.ok else None

    def write_tree(self, base_tree: str | None, entries: list[dict[str, object]]) -> str:
        """``base_tree`` with ``entries`` (GitHub's tree items) applied; blob modes only."""
        if base_tree and self.kind(base_tree) != "tree":
            raise GitDatabaseError("base_tree is not a valid tree oid")
        with tempfile.TemporaryDirectory(prefix="emulator-tree-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if base_tree:
                git.run(self.root, "read-tree", base_tree, env=env)
            for entry in entries:
                self._apply_entry(entry, env)
            return git.run(self.root, "write-tree", env=env).decode().strip()

    def _apply_entry(self, entry: dict[str, object], env: dict[str, str]) -> None:
        path, mode = entry.get("path"), entry.get("mode")
        if not isinstance(path, str) or not path or path.startswith("/") or "//" in path:
            raise GitDatabaseError("tree.path is invalid")
        if mode not in BLOB_MODES:
            raise GitDatabaseError(f"tree.mode {mode!r} is not supported here")
        if "content" in entry:
            content = entry["content"]
            if not isinstance(content, str):
                raise GitDatabaseError("tree.content must be a string")
            sha: object = self.write_blob(content.encode("utf-8"))
        else:
            sha = entry.get("sha")
            if sha is None:  # GitHub: sha null deletes the path
                git.run(self.root, "update-index", "--force-remove", "--", path, env=env)
                return
            if not isinstance(sha, str) or self.kind(sha) is None:
                raise GitDatabaseError(f"tree.sha {sha} is not a valid blob")
        git.run(self.root, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}", env=env)

    def tree_entries(self, tree: str) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for record in git.run(self.root, "ls-tree", "-z", "-l", tree).split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, sha, size = meta.decode().split()
            item: dict[str, object] = {
                "path": name.decode(),
                "mode": mode,
                "type": kind,
                "sha": sha,
            }
            if kind == "blob":
                item["size"] = int(size)
            out.append(item)
        return out

    def write_commit(
        self,
        *,
        tree: str,
        parents: list[str],
        message: str,
        author: Person,
        committer: Person,
        sign: bool,
        signature: str | None = None,
    ) -> str:
        if self.kind(tree) != "tree":
            raise GitDatabaseError("Tree SHA does not exist")
        if any(self.kind(p) != "commit" for p in parents):
            raise GitDatabaseError("Parent SHA does not exist or is not a commit object")
        headers = [f"tree {tree}", *(f"parent {p}" for p in parents)]
        headers += [f"author {author.header()}", f"committer {committer.header()}"]
        body = message if message.endswith("\n") else message + "\n"
        payload = "\n".join(headers) + "\n\n" + body
        if sign:
            signature = self._sign(payload)
        if signature:
            headers.append("gpgsig " + signature.strip("\n").replace("\n", "\n "))
        data = ("\n".join(headers) + "\n\n" + body).encode("utf-8")
        return (
            git.run(self.root, "hash-object", "-t", "commit", "-w", "--stdin", input_bytes=data)
            .decode()
            .strip()
        )

    def read_commits(self, shas: list[str]) -> list[StoredCommit]:
        objects = git.read_blobs(self.root, shas)
        return [_parse_commit(sha, objects[sha]) for sha in shas if sha in objects]

    def verification(self, commit: StoredCommit) -> dict[str, object]:
        """GitHub's verification object for a commit."""
        if not commit.signature:
            return {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                    "verified_at": None}  # fmt: skip
        ok = hmac.compare_digest(commit.signature, self._sign(commit.payload))
        return {
            "verified": ok,
            "reason": "valid" if ok else "invalid",
            "signature": commit.signature,
            "payload": commit.payload,
            "verified_at": commit.committer.json()["date"] if ok else None,
        }

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("utf-8"), hashlib.sha256).digest()
        return f"{_BEGIN}\n\n{base64.b64encode(digest).decode()}\n{_END}\n"

    # ------------------------------------------------------------------ refs and history
    def resolve(self, ref: str) -> str | None:
        """A commit named by a SHA or a branch, as GitHub resolves ``{ref}`` (None: none)."""
        for name in (f"refs/heads/{ref}", ref):
            sha = git.resolve(self.root, name)
            if sha is not None:
                return sha
        return None

    def ref(self, name: str) -> str | None:
        done = git.call(self.root, "rev-parse", "--verify", "-q", "--end-of-options", name)
        return done.text() or None if done.ok else None

    def create_ref(self, name: str, sha: str) -> None:
        if not re.fullmatch(r"refs/[^/]+/.+", name):
            raise GitDatabaseError("Reference name must start with 'refs/' and have two slashes")
        if self.kind(sha) is None:
            raise GitDatabaseError("Object does not exist")
        if not git.call(self.root, "update-ref", name, sha, git.ZERO).ok:
            raise GitDatabaseError("Reference already exists")

    def update_ref(self, name: str, sha: str, *, force: bool) -> None:
        old = self.ref(name)
        if old is None:
            raise GitDatabaseError("Reference does not exist")
        if self.kind(sha) != "commit":
            raise GitDatabaseError("Object does not exist")
        if not force and not git.is_ancestor(self.root, old, sha):
            raise GitDatabaseError("Update is not a fast forward")
        if not git.call(self.root, "update-ref", name, sha, old).ok:
            raise GitDatabaseError("Update is not a fast forward")

    def history(self, head: str) -> list[str]:
        """Every commit reachable from ``head``, newest first (as GitHub lists them)."""
        return git.run(self.root, "rev-list", head).decode().split()


def _parse_commit(sha: str, raw: bytes) -> StoredCommit:
    text = raw.decode("utf-8", "replace")
    head, _, message = text.partition("\n\n")
    fields: dict[str, list[str]] = {}
    kept: list[str] = []  # header lines without the signature: the signed payload
    signature: list[str] = []
    in_signature = False
    for line in head.split("\n"):
        if line.startswith(" ") and in_signature:
            signature.append(line[1:])
            continue
        in_signature = line.startswith("gpgsig ")
        if in_signature:
            signature.append(line[len("gpgsig ") :])
            continue
        kept.append(line)
        key, _, value = line.partition(" ")
        fields.setdefault(key, []).append(value)
    return StoredCommit(
        sha=sha,
        tree=fields["tree"][0],
        parents=tuple(fields.get("parent", [])),
        author=_person(fields["author"][0]),
        committer=_person(fields["committer"][0]),
        message=message,
        signature="\n".join(signature) + "\n" if signature else None,
        payload="\n".join(kept) + "\n\n" + message,
    )


def _person(value: str) -> Person:
    m = _PERSON.match(value)
    if m is None:
        return Person(value, "", datetime.fromtimestamp(0, UTC))
    return Person(m["name"], m["email"], datetime.fromtimestamp(int(m["epoch"]), UTC))


def account_of(email: str, known: dict[str, dict[str, object]]) -> dict[str, object] | None:
    """The GitHub account an e-mail address belongs to: GitHub's own addresses, or one a
    test registered (``known``); None for an address no account has verified."""
    if email.lower() == GITHUB_COMMITTER[1]:
        return dict(WEB_FLOW)
    m = _NOREPLY.match(email)
    if m:
        login = m["login"]
        user: dict[str, object] = {
            "login": login,
            "type": "Bot" if login.endswith("[bot]") else "User",
        }
        user["id"] = int(m["id"]) if m["id"] else abs(hash(login)) % 10**8
        return user
    found = known.get(email.lower())
    return dict(found) if found else None
