# Patching in memory with asr-git (issue 5, docs/patching.md), on a real git repository: a good
# patch makes exactly one commit on asr/incident-<id> with the trailers and the right diff, the
# operator's HEAD, branch, index and (dirty) work tree untouched, git fsck clean; asking again
# creates nothing; a revert is one new commit, idempotent too. Then the hostile patches: every
# request (../, absolute paths, symlinks, a submodule, .git, CI files, the asr config, outside
# patch_paths, caps, binary and non-UTF-8 content, NUL/CR/LF in paths, ambiguous or missing
# SEARCH, ...) must be refused with an error naming the problem, before any object is written
# (the object store is byte-for-byte the same), no branch appears, and a canary file outside the
# repository keeps its sha256. Prints the figures.
source "$(dirname "$0")/lib.sh"
GIT_HELPER=${ASR_GIT_BIN:-$(dirname "$ASR_BIN")/asr-git}
[ -x "$GIT_HELPER" ] || fail "no asr-git at $GIT_HELPER"
WORK=$(mktemp -d /tmp/asr-gitpatch.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/repo
mkdir -p "$R/svc/src/deep" "$R/svc/docs" "$R/svc/.github/workflows" "$R/.github/workflows" "$WORK/canary"
printf 'do not touch\n' > "$WORK/canary/secret.txt"
CANARY_SUM=$(sha256sum "$WORK/canary/secret.txt")

g() { git -C "$R" -c user.name=op -c user.email=op@example.invalid "$@"; }
g init -q -b main
printf 'int main(void)\n{\n    return 1;\n}\n' > "$R/svc/src/a.c"
printf 'static int twice;\nstatic int twice;\nint b(void)\n{\n\treturn 2;\n}\n' > "$R/svc/src/b.c"
printf 'x = 1;\n  y = 2;\n\ty  =  2;\n' > "$R/svc/src/ws.c"
printf 'int deep;\n' > "$R/svc/src/deep/d.c"
printf 'readme\n' > "$R/svc/docs/readme.md"
printf 'name: ci\n' > "$R/svc/.github/workflows/ci.yml"
printf 'name: ci\n' > "$R/.github/workflows/ci.yml"
printf 'state_dir: .asr\n' > "$R/svc/asr.yaml"
printf 'bin\0ary\n' > "$R/svc/src/blob.bin"
printf 'caf\xe9\nsecond\n' > "$R/svc/src/latin1.c"
for f in .gitlab-ci.yml .travis.yml azure-pipelines.yml Jenkinsfile .gitattributes; do
    printf 'x\n' > "$R/svc/$f"
done
python3 - "$R/svc/src" <<'EOF'
import sys
d = sys.argv[1]
# Two files of 7.5 MiB (the total cap is 16 MiB) and one a few bytes under the 8 MiB file cap.
for name, size in (("big1.txt", 7_864_320), ("big2.txt", 7_864_320), ("big3.txt", 8_388_600)):
    with open(f"{d}/{name}", "w") as f:
        line = "head\n"
        f.write(line + "a" * (size - len(line) - 1) + "\n")
EOF
ln -s "$WORK/canary" "$R/svc/src/lnk"
ln -s "$WORK/canary/secret.txt" "$R/svc/src/canary.txt"
g add -A
# A submodule-like gitlink (mode 160000) at svc/src/sub.
g update-index --add --cacheinfo "160000,$(printf 'x' | git hash-object --stdin),svc/src/sub"
g commit -qm "base"
BASE=$(g rev-parse HEAD)
# The operator's uncommitted work must survive everything below.
printf 'int main(void)\n{\n    return 1; /* operator was here */\n}\n' > "$R/svc/src/a.c"
printf 'staged\n' > "$R/svc/docs/staged.md"
g add svc/docs/staged.md

op_state() {
    printf '%s %s %s\n' "$(g symbolic-ref HEAD)" "$(g rev-parse HEAD)" "$(sha256sum < "$R/.git/index")"
    g status --porcelain=v1 --untracked-files=all
    sha256sum "$R/svc/src/a.c" "$R/svc/docs/staged.md"
}
OP_BEFORE=$(op_state)

export R BASE WORK GIT_HELPER
python3 - <<'EOF' || fail "asr-git patching (see above)"
import hashlib, json, os, subprocess, sys

R, BASE, WORK, HELPER = (os.environ[k] for k in ("R", "BASE", "WORK", "GIT_HELPER"))
SVC = f"{R}/svc"

def git(*args):
    return subprocess.run(["git", "-C", R, *args], capture_output=True, text=True, check=True).stdout.strip()

def objects():
    """Every file of the object store and its hash: nothing may be written by a refused request."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(f"{R}/.git/objects")):
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(p.encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()

def asr_refs():
    return git("for-each-ref", "--format=%(refname)", "refs/heads/asr")

def message(plan=3, incident=7, title="return 0 from main"):
    return (f"fix(shop): {title}\n\nThe handler returned 1.\n\n"
            f"Asr-Incident: {incident}\nAsr-Plan: {plan}\nAsr-Strategy: playbook\n")

def request(edits, repo=SVC, patch_paths=("src/**",), forbidden=(f"{SVC}/asr.yaml",), branch="asr/incident-7",
            msg=None, base=None, author=None, extra=None):
    r = {"repo": repo, "base": base or BASE, "branch": branch, "patch_paths": list(patch_paths),
         "forbidden": list(forbidden), "edits": edits, "message": msg or message(),
         "author": author or {"name": "asr", "email": "asr@example.invalid"}}
    r.update(extra or {})
    return r

def run(cmd, req, raw=None):
    data = raw if raw is not None else json.dumps(req).encode()
    p = subprocess.run([HELPER, cmd], input=data, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode(errors="replace").strip()

def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)

def E(path, search, replace):
    return {"path": path, "search": search, "replace": replace}

# ---- a good patch -----------------------------------------------------------------------------
good = request([E("src/a.c", "    return 1;\n", "    return 0;\n"),
                E("src/b.c", "int b(void)\n{\n    return 2;\n", "int b(void)\n{\n\treturn 3;\n")])
rc, out, errs = run("commit-edits", good)
if rc != 0 or not out.endswith("\tcreated\n"):
    fail(f"good patch: rc={rc} out={out!r} err={errs!r}")
sha = out.split("\t")[0]
if git("rev-parse", "refs/heads/asr/incident-7") != sha:
    fail("the branch does not point at the new commit")
if git("rev-list", "--count", f"{BASE}..{sha}") != "1" or git("rev-parse", f"{sha}^") != BASE:
    fail("not exactly one commit on top of the base")
body = git("log", "-1", "--format=%B", sha)
for t in ("Asr-Incident: 7", "Asr-Plan: 3", "Asr-Strategy: playbook"):
    if t not in git("log", "-1", "--format=%(trailers)", sha):
        fail(f"trailer {t} missing: {body!r}")
if not body.startswith("fix(shop): return 0 from main"):
    fail(f"subject: {body!r}")
if git("log", "-1", "--format=%an <%ae>", sha) != "asr <asr@example.invalid>":
    fail("author")
diff = git("show", "--format=", sha)
if ("-    return 1;\n+    return 0;" not in diff or "-\treturn 2;\n+\treturn 3;" not in diff
        or git("diff", "--name-only", BASE, sha).split() != ["svc/src/a.c", "svc/src/b.c"]):
    fail(f"diff:\n{diff}")
print(f"ok: good patch {sha[:12]} (exact match in a.c, whitespace-tolerant in b.c)", file=sys.stderr)
rc, out2, errs = run("commit-edits", good)
if rc != 0 or out2 != f"{sha}\texisting\n" or git("rev-parse", "refs/heads/asr/incident-7") != sha:
    fail(f"same request again: {out2!r} {errs!r}")
print("ok: the same request again creates nothing (same sha, 'existing')", file=sys.stderr)

rev = {"repo": SVC, "branch": "asr/incident-7", "commit": sha, "reason": "the build failed",
       "author": {"name": "asr", "email": "asr@example.invalid"}}
rc, out, errs = run("revert", rev)
if rc != 0 or not out.endswith("\tcreated\n"):
    fail(f"revert: {out!r} {errs!r}")
rsha = out.split("\t")[0]
if git("rev-parse", f"{rsha}^") != sha or git("diff", BASE, rsha) != "":
    fail("the revert is not one commit restoring the base tree")
tr = git("log", "-1", "--format=%(trailers)", rsha)
if f"Asr-Reverts: {sha}" not in tr or "Asr-Incident: 7" not in tr:
    fail(f"revert trailers: {tr!r}")
rc, out, errs = run("revert", rev)
if rc != 0 or out != f"{rsha}\texisting\n" or git("rev-parse", "refs/heads/asr/incident-7") != rsha:
    fail(f"revert again: {out!r} {errs!r}")
# The first plan's request again still finds its commit (a restarted daemon): nothing new.
rc, out, errs = run("commit-edits", good)
if out != f"{sha}\texisting\n" or git("rev-parse", "refs/heads/asr/incident-7") != rsha:
    fail(f"first plan after the revert: {out!r} {errs!r}")
# The next plan of the incident goes on the branch's tip.
nxt = request([E("src/a.c", "    return 1;\n", "    return 42;\n")], msg=message(plan=4))
rc, out, errs = run("commit-edits", nxt)
if rc != 0 or git("rev-parse", f"{out.split()[0]}^") != rsha:
    fail(f"next plan: {out!r} {errs!r}")
print("ok: revert is one new commit, idempotent; the next plan goes on the branch tip", file=sys.stderr)
fsck = subprocess.run(["git", "-C", R, "fsck", "--strict"], capture_output=True, text=True)
if fsck.returncode != 0 or "error" in fsck.stderr.lower():
    fail(f"git fsck: {fsck.stdout} {fsck.stderr}")

# ---- hostile patches ---------------------------------------------------------------------------
for ref in asr_refs().split():
    git("update-ref", "-d", ref)
git("reflog", "expire", "--expire=now", "--all")
git("gc", "-q", "--prune=now")
OBJ = objects()
ANY = ("**",)
big = "r" * (70 * 1024)
many = [E("src/a.c", f"line{i}\n", "x\n") for i in range(33)]
files17 = [E(f"src/new{i}.c", "", "int x;\n") for i in range(17)]
H = []  # (name, request or raw bytes, expected words in the error, cmd)

def h(name, req, expect, cmd="commit-edits"):
    H.append((name, req, expect, cmd))

one = lambda p, s="x\n", r="y\n", **kw: request([E(p, s, r)], **kw)
# Escapes and absolute paths.
h("dotdot", one("../a.c"), "'..' component")
h("dotdot deep", one("src/../../x", patch_paths=ANY), "'..' component")
h("dotdot canary", one("../../canary/secret.txt", patch_paths=ANY), "'..' component")
h("dotdot at end", one("src/..", patch_paths=ANY), "'..' component")
h("absolute", one("/etc/passwd", patch_paths=ANY), "is absolute")
h("absolute canary", one(f"{WORK}/canary/secret.txt", patch_paths=ANY), "is absolute")
h("dot", one("./src/a.c", patch_paths=ANY), "'.' component")
h("double slash", one("src//a.c"), "empty component")
h("trailing slash", one("src/a.c/"), "empty component")
h("backslash", one("src\\..\\..\\x", patch_paths=ANY), "backslash")
h("percent", one("src/%2e%2e/x"), "contains '%'")
h("cyrillic lookalike", one("src/\u0430.c"), "non-ASCII")
h("too long", one("src/" + "a" * 600), "longer than 512")
h("too deep", one("src/" + "d/" * 40 + "x.c"), "more than 32 components")
# Symlinks and submodules, in the tree.
h("symlink dir", one("src/lnk/secret.txt", "do not touch\n", "owned\n"), "symlink")
h("symlink file", one("src/canary.txt", "do not touch\n", "owned\n"), "symlink")
h("create through symlink dir", one("src/lnk/new.txt", "", "owned\n"), "symlink")
h("create over symlink", one("src/canary.txt", "", "owned\n"), "symlink")
h("symlink from the top", one("svc/src/lnk/secret.txt", "do not touch\n", "owned\n", repo=R, patch_paths=ANY), "symlink")
h("through submodule", one("src/sub/x.c", "", "int x;\n"), "submodule")
h("submodule itself", one("src/sub"), "submodule")
# git's own files.
h(".git/config", one(".git/config", patch_paths=ANY), "'.git' component")
h(".GIT/hooks", one(".GIT/hooks/pre-commit", "", "#!/bin/sh\n", patch_paths=ANY), "'.git' component")
h(".Git/HEAD", one(".Git/HEAD", patch_paths=ANY), "'.git' component")
h("nested .git", one("src/.git/config"), "'.git' component")
h(".git from the top", one(".git/hooks/post-commit", "", "x\n", repo=R, patch_paths=ANY), "'.git' component")
h(".gitmodules", one(".gitmodules", "", "[submodule]\n", patch_paths=ANY), "git control file")
h(".gitattributes", one(".gitattributes", patch_paths=ANY), "git control file")
# CI.
h("workflow", one(".github/workflows/ci.yml", "name: ci\n", "name: owned\n", patch_paths=ANY), "CI workflow")
h("workflow case", one(".GitHub/Workflows/ci.yml", "", "x\n", patch_paths=ANY), "CI workflow")
h("workflow from the top", one(".github/workflows/ci.yml", "name: ci\n", "name: x\n", repo=R, patch_paths=ANY), "CI workflow")
h("new workflow", one(".github/workflows/new.yml", "", "on: push\n", patch_paths=ANY), "CI workflow")
h("github action", one(".github/actions/setup/action.yml", "", "x\n", patch_paths=ANY), "CI workflow")
h("gitlab", one(".gitlab-ci.yml", patch_paths=ANY), "CI configuration")
h("travis", one(".travis.yml", patch_paths=ANY), "CI configuration")
h("azure", one("azure-pipelines.yml", patch_paths=ANY), "CI configuration")
h("jenkins", one("Jenkinsfile", patch_paths=ANY), "CI configuration")
h("jenkins deep", one("src/Jenkinsfile", "", "x\n"), "CI configuration")
h("circleci", one(".circleci/config.yml", "", "x\n", patch_paths=ANY), "CI configuration")
h("buildkite", one(".buildkite/pipeline.yml", "", "x\n", patch_paths=ANY), "CI configuration")
# The asr config.
h("asr config", one("asr.yaml", "state_dir: .asr\n", "state_dir: /\n", patch_paths=ANY), "forbidden path")
h("asr config, relative", one("asr.yaml", "state_dir: .asr\n", "x\n", patch_paths=ANY, forbidden=("asr.yaml",)), "forbidden path")
h("asr config, case", one("ASR.yaml", "", "x\n", patch_paths=ANY), "forbidden path")
h("asr config from the top", one("svc/asr.yaml", "state_dir: .asr\n", "x\n", repo=R, patch_paths=ANY), "forbidden path")
# patch_paths.
h("outside patch_paths", one("docs/readme.md", "readme\n", "x\n"), "outside patch_paths")
h("outside a narrow glob", one("src/deep/d.c", "int deep;\n", "x\n", patch_paths=("src/*.c",)), "outside patch_paths")
h("no patch_paths", one("src/a.c", patch_paths=()), "no patch_paths")
# Caps and text.
h("huge replace", one("src/a.c", "    return 1;\n", big), "longer than 65536")
h("huge search", one("src/a.c", big, "x\n"), "longer than 65536")
h("33 edits", request(many), "33 edits")
h("17 files", request(files17), "more than 16 files")
h("total bytes", request([E("src/big1.txt", "head\n", "HEAD\n"), E("src/big2.txt", "head\n", "HEAD\n"),
                          E("src/big3.txt", "head\n", "HEAD\n")]), "more than 16777216 bytes")
h("file over the cap", one("src/big3.txt", "head\n", "head\n" + "b" * 60000 + "\n"), "exceed the cap")
h("NUL in replace", one("src/a.c", "    return 1;\n", "    return 0;\0\n"), "NUL byte")
h("NUL in search", one("src/a.c", "    return\0 1;\n", "x\n"), "NUL byte")
h("binary file", one("src/blob.bin", "bin\n", "x\n", patch_paths=ANY), "binary file")
h("result not UTF-8", one("src/latin1.c", "second\n", "third\n"), "not valid UTF-8")
# Paths with NUL, CR, LF, tab, and bytes that are not UTF-8.
h("NUL in path", one("src/a\0.c"), "NUL byte")
h("CR in path", one("src/a\r.c"), "control character")
h("LF in path", one("src/a\n.c"), "control character")
h("tab in path", one("src/a\t.c"), "control character")
h("ESC in path", one("src/\x1b[31m.c"), "control character")
raw = json.dumps(one("src/PLACEHOLDER.c")).encode().replace(b"PLACEHOLDER", b"\xff\xfe")
h("non-UTF-8 path", raw, "not JSON")
# SEARCH.
h("duplicate SEARCH", one("src/b.c", "static int twice;\n", "x\n"), "occurs 2 times")
h("SEARCH not found", one("src/a.c", "return 7;\n", "x\n"), "not found")
h("ambiguous whitespace", one("src/ws.c", "y = 2;\n", "z\n"), "with whitespace ignored it occurs 2 times")
h("create existing", one("src/a.c", "", "x\n"), "already exists")
h("missing file", one("src/none.c"), "no such file")
h("missing dir", one("src/no/dir.c", "", "x\n"), "does not exist")
h("a directory", one("src/deep", patch_paths=ANY), "a directory")
h("changes nothing", one("src/a.c", "    return 1;\n", "    return 1;\n"), "change nothing")
# The request itself.
h("branch main", one("src/a.c", "    return 1;\n", "x\n", branch="main"), "branch 'main' refused")
h("branch refs", one("src/a.c", "    return 1;\n", "x\n", branch="refs/heads/main"), "refused")
h("branch dotdot", one("src/a.c", "    return 1;\n", "x\n", branch="asr/../main"), "refused")
h("branch lock", one("src/a.c", "    return 1;\n", "x\n", branch="asr/x.lock"), "refused")
h("no trailers", one("src/a.c", "    return 1;\n", "x\n", msg="fix: x\n"), "trailer")
h("control in message", one("src/a.c", "    return 1;\n", "x\n", msg="fix(shop): \x1b[2J\n\nAsr-Incident: 7\nAsr-Plan: 3\nAsr-Strategy: playbook\n"), "control character")
h("base not a sha", one("src/a.c", "    return 1;\n", "x\n", base="HEAD"), "40-hex")
h("unknown base", one("src/a.c", "    return 1;\n", "x\n", base="0" * 40), "no commit")
h("author newline", one("src/a.c", "    return 1;\n", "x\n", author={"name": "a\nb", "email": "a@b"}), "control character")
h("author angle", one("src/a.c", "    return 1;\n", "x\n", author={"name": "a", "email": "a@b>\n"}), "control character")
h("unknown key", one("src/a.c", "    return 1;\n", "x\n", extra={"hooks": "x"}), "unknown key")
h("unknown edit key", request([{"path": "src/a.c", "search": "x\n", "replace": "y\n", "mode": "120000"}]), "unknown key")
raw = b'{"repo": "' + SVC.encode() + b'", "repo": "/", "edits": []}'
h("duplicate key", raw, "not JSON")
h("revert on a missing branch", {"repo": SVC, "branch": "asr/incident-7", "commit": BASE,
                            "author": {"name": "a", "email": "a@b"}}, "no branch", "revert")

tried = rejected = 0
for name, req, expect, cmd in H:
    tried += 1
    rc, out, errs = run(cmd, None if isinstance(req, bytes) else req, req if isinstance(req, bytes) else None)
    ok = rc == 1 and out == "" and expect.lower() in errs.lower() and "\n" not in errs
    if not ok:
        print(f"FAIL: hostile '{name}': rc={rc} out={out!r} err={errs!r} (wanted '{expect}')", file=sys.stderr)
        continue
    if asr_refs() != "":
        fail(f"hostile '{name}' left a branch: {asr_refs()}")
    if objects() != OBJ:
        fail(f"hostile '{name}' wrote to the object store")
    rejected += 1
    print(f"  refused {name}: {errs}", file=sys.stderr)
print(f"hostile patches: {tried} tried, {rejected} rejected before anything was written, "
      f"{tried - rejected} not", file=sys.stderr)
if tried < 50 or rejected != tried:
    sys.exit(1)
# Negative control: the same checks see a request that is accepted.
rc, out, errs = run("commit-edits", good)
if rc != 0 or objects() == OBJ or asr_refs() == "":
    fail("the checks above would not have seen a write")
EOF

[ "$(sha256sum "$WORK/canary/secret.txt")" = "$CANARY_SUM" ] || fail "the canary outside the repository changed"
pass "canary unchanged: $(cut -c1-16 <<<"$CANARY_SUM")..."
[ "$(op_state)" = "$OP_BEFORE" ] || fail "the operator's HEAD, index or work tree changed: $(op_state)"
pass "the operator's branch, HEAD, index and dirty work tree are unchanged"
git -C "$R" fsck --strict >/dev/null 2>&1 || fail "git fsck"
pass "git fsck clean"
