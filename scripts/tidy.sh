#!/bin/sh
# tidy.sh [ROOT]: checks the source tree (default: the tree this script is in)
# and prints one line per violation, "path:line: [rule] message". Exits 0 when
# the tree is clean, 1 on any violation, 2 when it cannot check (no python3,
# no clang-format).
#
# The files checked are the tracked ones plus untracked files git does not
# ignore (a new file is checked before its first commit); outside a git work
# tree, every file except .git/ and build*/ directories.
#
# Rules, for every *.c and *.h:
#   [length]   a top-level function body (the lines between its opening and
#              closing brace; START_TEST ... END_TEST bodies count too) has at
#              most MAX_FUNCTION_LINES lines
#   [columns]  a line has at most MAX_COLUMNS columns
#   [format]   clang-format (the root .clang-format) leaves the file unchanged
#   [include]  the include graph below; a header belongs to the folder it is
#              found in, whatever the include spells (<x.h> or "x.h")
#   [call]     the calls below are not made
set -eu

MAX_FUNCTION_LINES=70
MAX_COLUMNS=100

# The include DAG. A folder may include the project headers of the folders
# named on its line, and the single headers named there (tly_log.h: the
# ledger's read API). `*` allows every public header. A folder without a line
# may include nothing from the project.
#
# folder              may include project headers from
INCLUDE_RULES='
schemas               schemas
metrics               schemas metrics
ledger                schemas ledger
producers             schemas ledger producers
consumers/engine      schemas consumers/engine
consumers/views       schemas consumers/engine consumers/views
consumers/runtime     schemas tly_log.h consumers/engine consumers/views consumers/runtime
consumers/query       schemas tly_log.h consumers/engine consumers/views consumers/query
consumers/audit       schemas tly_log.h consumers/engine consumers/views consumers/runtime
                      consumers/audit
consumers/report      schemas consumers/query consumers/report
consumers/web         schemas tly_log.h consumers/engine consumers/views consumers/runtime
                      consumers/audit consumers/query consumers/web
ledger/cli            *
producers/cli         *
consumers/cli         *
.                     *
tests                 *
fuzz                  *
'
# A continuation line (starting with blanks) adds to the folder above it.

# System headers a folder must not include. The engine is the pure fold: no
# LMDB, ZeroMQ, clock or file system.
#
# folder              forbidden system headers
FORBIDDEN_SYSTEM='
consumers/engine      lmdb.h zmq.h time.h sys/time.h unistd.h fcntl.h dirent.h
                      sys/stat.h pthread.h
'

# Internal headers: included only from the folder that holds them (engine_*.h:
# the engine's floor headers, see consumers/engine/engine_internal.h).
INTERNAL_HEADERS='*_internal.h audit_int.h engine_*.h'

# The command layer's headers: included only from these places (a glob on the
# file's path) and from the file that implements the header (tly_cli.c).
COMMAND_HEADERS='tly_cmd.h tly_cli.h'
COMMAND_LAYER='tally.c */cli/* tests/*'

# Folders exempt from the include rules above (they may include anything).
INCLUDE_EXEMPT='tests fuzz'

# Functions no file under a folder may call (or name).
#
# folder              functions it must not call
FORBIDDEN_CALLS='
consumers             tly_log_append
'

ROOT=${1:-$(dirname "$0")/..}
ROOT=$(cd "$ROOT" && pwd -P)

if ! command -v python3 >/dev/null 2>&1; then
    echo "tidy: python3 not found" >&2
    exit 2
fi
CLANG_FORMAT=
for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1; then
        CLANG_FORMAT=$c
        break
    fi
done
if [ -z "$CLANG_FORMAT" ]; then
    echo "tidy: clang-format not found (scripts/deps.sh installs it)" >&2
    exit 2
fi

if [ "$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null || true)" = "$ROOT" ]; then
    FILES=$(cd "$ROOT" && git ls-files --cached --others --exclude-standard)
else
    FILES=$(cd "$ROOT" && find . -name .git -prune -o -name 'build*' -type d -prune \
        -o -type f -print | sed 's|^\./||')
fi

export ROOT FILES CLANG_FORMAT MAX_FUNCTION_LINES MAX_COLUMNS INCLUDE_RULES
export FORBIDDEN_SYSTEM INTERNAL_HEADERS COMMAND_HEADERS COMMAND_LAYER INCLUDE_EXEMPT
export FORBIDDEN_CALLS
exec python3 - <<'EOF'
import bisect
import fnmatch
import os
import re
import subprocess
import sys

env = os.environ
root = env["ROOT"]
max_lines = int(env["MAX_FUNCTION_LINES"])
max_cols = int(env["MAX_COLUMNS"])
files = sorted(f for f in env["FILES"].split("\n")
               if f.endswith((".c", ".h")) and os.path.isfile(os.path.join(root, f)))
violations = []


def report(path, line, rule, msg):
    violations.append((path, line, rule, msg))


def table(text):
    """Folder table: first word a folder, the rest its words; a line that
    starts with blanks continues the folder above."""
    rows = {}
    last = None
    for raw in text.split("\n"):
        if not raw.strip():
            continue
        words = raw.split()
        if raw[0].isspace():
            rows[last].extend(words)
        else:
            last = words[0]
            rows.setdefault(last, []).extend(words[1:])
    return rows


include_rules = table(env["INCLUDE_RULES"])
forbidden_system = table(env["FORBIDDEN_SYSTEM"])
forbidden_calls = table(env["FORBIDDEN_CALLS"])
internal = env["INTERNAL_HEADERS"].split()
command_headers = env["COMMAND_HEADERS"].split()
command_layer = env["COMMAND_LAYER"].split()
exempt = env["INCLUDE_EXEMPT"].split()


def folder_of(path):
    return os.path.dirname(path) or "."


def under(path, folder):
    return folder == "." or path == folder or path.startswith(folder + "/")


# Comments, string and character literals, preprocessor lines (with their
# continuations): the leftmost match wins, so "//" in a string is a string.
noncode_re = re.compile(r"""
    /\*.*?\*/ | //[^\n]*
  | "(?:\\.|[^"\\\n])*" | '(?:\\.|[^'\\\n])*'
  | ^[ \t]*\#(?:\\\n|[^\n])*
""", re.S | re.M | re.X)


def strip_code(text):
    """The text with comments, literals and preprocessor lines blanked
    (newlines kept, so offsets map to the same lines)."""
    return noncode_re.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def line_of(starts, pos):
    return bisect.bisect_right(starts, pos)


def function_name(head):
    """The name a function definition's head declares: the identifier before
    its first parenthesis (for START_TEST(name), the name)."""
    m = re.search(r"(\w+)\s*\(\s*(\w*)", head)
    if not m:
        return "?"
    return m.group(2) if m.group(1) == "START_TEST" else m.group(1)


def check_functions(path, code):
    """Every top-level brace whose head (the text since the last top-level
    ';' or '}') has a parenthesis and no '=' opens a function body; struct,
    union and enum bodies and initializers have none or an '='."""
    starts = [0] + [m.end() for m in re.finditer(r"\n", code)]
    depth = 0
    head = 0  # where the current top-level declaration starts
    start = None  # (line of the opening brace, name) of the open function
    for m in re.finditer(r"[{};]", code):
        i = m.start()
        c = code[i]
        if c == ";":
            if depth == 0:
                head = i + 1
        elif c == "{":
            if depth == 0:
                text = code[head:i]
                start = None
                if "(" in text and "=" not in text:
                    start = (line_of(starts, i), function_name(text))
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                head = i + 1
                if start:
                    body = max(0, line_of(starts, i) - start[0] - 1)
                    if body > max_lines:
                        report(path, start[0], "length", "function %s has %d lines (max %d)"
                               % (start[1], body, max_lines))
                start = None


def check_columns(path, text):
    for no, raw in enumerate(text.split("\n"), 1):
        cols = len(raw.rstrip("\r").expandtabs(8))
        if cols > max_cols:
            report(path, no, "columns", "line of %d columns (max %d)" % (cols, max_cols))


# Which folder holds each header (by file name).
owner = {}
for f in files:
    if f.endswith(".h"):
        owner.setdefault(os.path.basename(f), []).append(folder_of(f))

include_re = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def check_includes(path, text):
    folder = folder_of(path)
    if folder in exempt:
        return
    allowed = include_rules.get(folder)
    if allowed is None:
        report(path, 1, "include", "folder %s has no line in INCLUDE_RULES" % folder)
        return
    for m in include_re.finditer(text):
        no = text.count("\n", 0, m.start()) + 1
        spelled = m.group(2)
        name = os.path.basename(spelled)
        shown = ("<%s>" if m.group(1) == "<" else '"%s"') % spelled
        if m.group(1) == "<" and spelled not in owner:
            if spelled in forbidden_system.get(folder, []):
                report(path, no, "include", "%s may not include %s" % (folder, shown))
            continue
        homes = owner.get(name)
        if not homes:
            report(path, no, "include", "%s is not found in the tree" % shown)
            continue
        if len(homes) > 1:
            report(path, no, "include", "%s is in several folders: %s" % (shown, " ".join(homes)))
            continue
        home = homes[0]
        if any(fnmatch.fnmatch(name, p) for p in internal) and home != folder:
            report(path, no, "include", "%s is internal to %s" % (shown, home))
        elif name in command_headers and not (
                any(fnmatch.fnmatch(path, p) for p in command_layer)
                or path == os.path.join(home, name[:-2] + ".c")):
            report(path, no, "include",
                   "%s is the command layer's (only %s)" % (shown, " ".join(command_layer)))
        elif "*" not in allowed and home not in allowed and name not in allowed:
            report(path, no, "include",
                   "%s may not include %s (from %s)" % (folder, shown, home))


def check_calls(path, code):
    for folder, names in forbidden_calls.items():
        if not under(path, folder):
            continue
        for name in names:
            for m in re.finditer(r"\b%s\b" % re.escape(name), code):
                no = code.count("\n", 0, m.start()) + 1
                report(path, no, "call", "%s may not call %s" % (folder, name))


for f in files:
    with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    code = strip_code(text)
    check_functions(f, code)
    check_columns(f, text)
    check_includes(f, text)
    check_calls(f, code)

# clang-format, in one batch per core; one report per file (its first
# difference).
style = "--style=file:" + os.path.join(root, ".clang-format")
jobs = max(1, min(len(files), os.cpu_count() or 1))
procs = [(files[k::jobs],
          subprocess.Popen([env["CLANG_FORMAT"], "--dry-run", "-Werror", style] + files[k::jobs],
                           cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           universal_newlines=True)) for k in range(jobs)]
flagged = set()
for batch, proc in procs:
    err = proc.communicate()[1]
    for m in re.finditer(r"^(.+?):(\d+):\d+: error: (.*)$", err, re.M):
        if m.group(1) not in flagged:
            flagged.add(m.group(1))
            report(m.group(1), int(m.group(2)), "format",
                   "not clang-format clean (%s --dry-run -Werror)" % env["CLANG_FORMAT"])
    if proc.returncode != 0 and not any(p in flagged for p in batch):
        sys.stderr.write(err)
        sys.stderr.write("tidy: clang-format failed\n")
        sys.exit(2)

for v in sorted(violations):
    print("%s:%d: [%s] %s" % v)
if violations:
    print("tidy: %d violation(s) in %d file(s)" % (len(violations),
                                                   len(set(v[0] for v in violations))))
    sys.exit(1)
print("tidy: %d files clean" % len(files))
EOF
