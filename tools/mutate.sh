#!/usr/bin/env bash
# The mutation check (docs/testing.md): plants known bug patterns (tools/mutants.txt) one at a time
# into a scratch copy of the working tree, rebuilds, runs the CPU suite, and reports which mutants
# the suite did not notice. Run before a release; every mutant must be killed.
#
#   tools/mutate.sh [--list] [--only NAME[,NAME...]] [--all] [--keep] [--jobs N] [--dir DIR]
#                   [--commit REV] [--mutants FILE] [--dry-run]
#
# The copy is the working tree as git sees it (tracked files and untracked ones that are not
# ignored), so uncommitted edits are checked too, or with --commit a committed tree; the working
# tree itself is never written. One
# build (CPU backend, Release, no fuzz, no MPI) is configured there and built once; the clean suite
# must pass; then for each mutant: replace its original text (which must occur exactly once in its
# file, or the mutant has rotted and is reported as NOT-APPLIED), rebuild incrementally, run
#   ctest -L cpu -LE "fuzz|rooms" --stop-on-failure
# and put the file back. A mutant is killed when a test fails, and survives when the suite passes.
#
# Exit status: 0 when every mutant was killed; 1 when one survived, did not apply or did not
# build; 2 for a usage error, a failed build of the clean tree or a failing clean suite.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: tools/mutate.sh [options]

Plants each bug of tools/mutants.txt, one at a time, into a scratch copy of the working tree,
rebuilds it and runs the CPU test suite (ctest -L cpu -LE "fuzz|rooms" --stop-on-failure).
Prints a table of killed and surviving mutants. Exit status 0: all killed; 1: a mutant
survived, did not apply (its original text is not in its file exactly once) or did not
build; 2: usage error, or the clean tree does not build or pass.

options:
  --list               list the mutants (name, file, bug class) and exit
  --only NAME[,NAME]   run only these mutants (repeatable)
  --all                run the whole suite on each mutant instead of stopping at the first
                       failure, and name every test that failed (which tests guard what)
  --keep               keep the scratch directory (it is kept anyway when a mutant is not killed,
                       and a directory given with --dir is never removed)
  --jobs N             parallel build jobs and tests (default: nproc)
  --dir DIR            scratch directory (default: a new one under ${TMPDIR:-/tmp}); a directory
                       kept from an earlier run is brought up to date and its build reused
  --commit REV         check this commit's tree instead of the working tree (a release, or
                       HEAD while the working tree holds someone's unfinished edits)
  --mutants FILE       the mutant list (default: the working tree's tools/mutants.txt)
  --dry-run            only check that every mutant's original text is in its file exactly once
                       (in the working tree or REV; nothing is built)
  -h, --help           this text

Logs: DIR/logs/<mutant>.log (build and test output), DIR/logs/clean.log; the table in
DIR/results.txt and, as Markdown, DIR/results.md.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MUTANTS="$ROOT/tools/mutants.txt"
JOBS=$(nproc 2>/dev/null || echo 2)
KEEP=0
ALL=0
LIST=0
DRY=0
DIR=""
REV=""
ONLY=()

while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --list) LIST=1 ;;
    --keep) KEEP=1 ;;
    --all) ALL=1 ;;
    --dry-run) DRY=1 ;;
    --only)
        [ $# -ge 2 ] || { echo "mutate: --only needs a name" >&2; exit 2; }
        IFS=, read -r -a names <<<"$2"
        ONLY+=("${names[@]}")
        shift
        ;;
    --jobs)
        if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
            echo "mutate: --jobs needs a positive number" >&2
            exit 2
        fi
        JOBS=$2
        shift
        ;;
    --dir)
        [ $# -ge 2 ] || { echo "mutate: --dir needs a directory" >&2; exit 2; }
        DIR=$2
        shift
        ;;
    --commit)
        [ $# -ge 2 ] || { echo "mutate: --commit needs a revision" >&2; exit 2; }
        REV=$2
        shift
        ;;
    --mutants)
        [ $# -ge 2 ] || { echo "mutate: --mutants needs a file" >&2; exit 2; }
        MUTANTS=$2
        shift
        ;;
    *)
        echo "mutate: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

# ---------------------------------------------------------------------------------------------
# The mutant list (format: the header of tools/mutants.txt). Each mutant's texts go to files, so
# that any byte sequence survives; the arrays hold names, files and bug classes.
M_NAME=()
M_FILE=()
M_BUG=()
[ -f "$MUTANTS" ] || { echo "mutate: no mutant list $MUTANTS" >&2; exit 2; }
TEXTS=$(mktemp -d "${TMPDIR:-/tmp}/llava-mutants.XXXXXX") || exit 2
trap 'rm -rf "$TEXTS"' EXIT

parse_error() {
    echo "mutate: $MUTANTS:$1: $2" >&2
    exit 2
}

parse_mutants() {
    local line n=0 state=out cur=-1 orig="" repl="" first=1 name
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$state" in
        out)
            case "$line" in
            "" | "#"*) ;;
            "["*"]")
                name=${line#[}
                name=${name%]}
                [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || parse_error "$n" "mutant name \"$name\" (use a-z, 0-9 and -)"
                for existing in "${M_NAME[@]}"; do
                    [ "$existing" != "$name" ] || parse_error "$n" "mutant $name defined twice"
                done
                cur=$((cur + 1))
                M_NAME[cur]=$name
                M_FILE[cur]=""
                M_BUG[cur]=""
                ;;
            "file: "*)
                [ "$cur" -ge 0 ] || parse_error "$n" "file: before any [name]"
                M_FILE[cur]=${line#file: }
                ;;
            "bug: "*)
                [ "$cur" -ge 0 ] || parse_error "$n" "bug: before any [name]"
                M_BUG[cur]=${line#bug: }
                ;;
            "@@ original")
                [ "$cur" -ge 0 ] || parse_error "$n" "@@ original before any [name]"
                state=orig
                orig=""
                first=1
                ;;
            *) parse_error "$n" "unexpected line: $line" ;;
            esac
            ;;
        orig)
            if [ "$line" = "@@ mutant" ]; then
                state=repl
                repl=""
                first=1
            elif [[ "$line" == "@@"* ]]; then
                parse_error "$n" "expected @@ mutant after the original text"
            else
                if [ "$first" = 1 ]; then orig=$line; else orig+=$'\n'"$line"; fi
                first=0
            fi
            ;;
        repl)
            if [ "$line" = "@@ end" ]; then
                state=out
                [ -n "$orig" ] || parse_error "$n" "mutant ${M_NAME[cur]}: empty original text"
                [ "$orig" != "$repl" ] || parse_error "$n" "mutant ${M_NAME[cur]}: the mutant equals the original"
                printf '%s' "$orig" >"$TEXTS/$cur.orig"
                printf '%s' "$repl" >"$TEXTS/$cur.repl"
            elif [[ "$line" == "@@"* ]]; then
                parse_error "$n" "expected @@ end after the mutant text"
            else
                if [ "$first" = 1 ]; then repl=$line; else repl+=$'\n'"$line"; fi
                first=0
            fi
            ;;
        esac
    done <"$MUTANTS"
    [ "$state" = out ] || parse_error "$n" "the last mutant has no @@ end"
    local i
    for i in "${!M_NAME[@]}"; do
        [ -n "${M_FILE[i]}" ] || parse_error "$n" "mutant ${M_NAME[i]} has no file:"
        [ -n "${M_BUG[i]}" ] || parse_error "$n" "mutant ${M_NAME[i]} has no bug:"
        [ -f "$TEXTS/$i.orig" ] || parse_error "$n" "mutant ${M_NAME[i]} has no @@ original / @@ mutant / @@ end"
    done
}
parse_mutants

if [ "$LIST" = 1 ]; then
    for i in "${!M_NAME[@]}"; do
        printf '%-28s %-28s %s\n' "${M_NAME[i]}" "${M_FILE[i]}" "${M_BUG[i]}"
    done
    exit 0
fi

# The mutants to run, in the list's order.
SEL=()
if [ ${#ONLY[@]} -gt 0 ]; then
    for want in "${ONLY[@]}"; do
        found=0
        for i in "${!M_NAME[@]}"; do [ "${M_NAME[i]}" = "$want" ] && found=1; done
        [ "$found" = 1 ] || { echo "mutate: no mutant named $want (see --list)" >&2; exit 2; }
    done
    for i in "${!M_NAME[@]}"; do
        for want in "${ONLY[@]}"; do [ "${M_NAME[i]}" = "$want" ] && SEL+=("$i"); done
    done
else
    SEL=("${!M_NAME[@]}")
fi

# apply TREE INDEX: replaces mutant INDEX's original text in its file under TREE; fails (status 3,
# a message on stderr) unless the text occurs exactly once.
apply() {
    perl -e '
        use strict;
        my ($path, $of, $rf) = @ARGV;
        local $/;
        open(my $fh, "<", $of) or die "$of: $!\n"; my $o = <$fh>; close $fh;
        open($fh, "<", $rf) or die "$rf: $!\n"; my $r = <$fh>; close $fh;
        $r = "" unless defined $r;
        open($fh, "<", $path) or do { print STDERR "no such file\n"; exit 3 };
        my $t = <$fh>; close $fh;
        $t = "" unless defined $t;
        my ($n, $p) = (0, 0);
        while (($p = index($t, $o, $p)) >= 0) { $n++; $p += length $o; }
        if ($n != 1) { print STDERR "original text found $n times (want exactly 1)\n"; exit 3 }
        if ($ARGV[3]) { exit 0 }
        substr($t, index($t, $o), length $o) = $r;
        open($fh, ">", $path) or die "$path: $!\n"; print $fh $t; close $fh or die "$path: $!\n";
    ' "$1/${M_FILE[$2]}" "$TEXTS/$2.orig" "$TEXTS/$2.repl" "${3:-0}"
}

# What is copied: FROM (a directory) and the files of it, NUL-separated, in $TEXTS/files. The
# working tree: tracked files still present plus untracked ones that are not ignored. A commit: its
# tree, unpacked under $TEXTS.
if [ -n "$REV" ]; then
    full=$(git -C "$ROOT" rev-parse --verify --quiet "$REV^{commit}") || { echo "mutate: no commit $REV" >&2; exit 2; }
    COMMIT=${full:0:12}
    FROM=$TEXTS/tree
    mkdir -p "$FROM" && git -C "$ROOT" archive --format=tar "$full" | tar -C "$FROM" -xf - || exit 2
    git -C "$ROOT" ls-tree -r -z --name-only "$full" | sort -zu >"$TEXTS/files"
else
    FROM=$ROOT
    COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT+dirty"
    git -C "$ROOT" ls-files -co --exclude-standard -z | sort -zu |
        while IFS= read -r -d '' f; do
            if [ -f "$ROOT/$f" ] || [ -L "$ROOT/$f" ]; then printf '%s\0' "$f"; fi
        done >"$TEXTS/files"
fi

if [ "$DRY" = 1 ]; then
    bad=0
    for i in "${SEL[@]}"; do
        if why=$(apply "$FROM" "$i" 1 2>&1); then
            printf '%-28s ok\n' "${M_NAME[i]}"
        else
            printf '%-28s NOT-APPLIED  %s: %s\n' "${M_NAME[i]}" "${M_FILE[i]}" "$why"
            bad=1
        fi
    done
    exit "$bad"
fi

# ---------------------------------------------------------------------------------------------
# The scratch copy

if [ -z "$DIR" ]; then
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/llava-mutate.XXXXXX") || exit 2
else
    KEEP=1 # a directory named by --dir is the caller's: never removed
fi
mkdir -p "$DIR/src" "$DIR/logs" || exit 2
DIR=$(cd "$DIR" && pwd)
SRC=$DIR/src
BUILD=$DIR/build
LOGS=$DIR/logs

echo "mutate: $COMMIT, ${#SEL[@]} mutants, scratch $DIR"

cp "$TEXTS/files" "$DIR/files.new" || exit 2
if [ -s "$DIR/files.list" ] && [ -d "$BUILD" ]; then
    # An earlier run's copy: rewrite only what differs (new mtimes: make rebuilds those), drop what is gone.
    changed=0
    while IFS= read -r -d '' f; do
        if [ -L "$FROM/$f" ] || ! cmp -s "$FROM/$f" "$SRC/$f"; then
            mkdir -p "$(dirname "$SRC/$f")" && rm -f "$SRC/$f" && cp -P "$FROM/$f" "$SRC/$f" || exit 2
            changed=$((changed + 1))
        fi
    done <"$DIR/files.new"
    while IFS= read -r -d '' f; do rm -f "$SRC/$f"; done < <(comm -z -23 "$DIR/files.list" "$DIR/files.new")
    echo "mutate: reusing $DIR ($changed files updated)"
else
    (cd "$FROM" && tar --null -T "$DIR/files.new" -cf -) | tar -C "$SRC" -xf - || exit 2
fi
mv "$DIR/files.new" "$DIR/files.list"

CURRENT=""  # the file under SRC that holds a mutant right now
restore() {
    if [ -n "$CURRENT" ]; then
        cp "$DIR/orig" "$SRC/$CURRENT" # a fresh mtime: the next build recompiles it
        CURRENT=""
    fi
}
trap 'restore; rm -rf "$TEXTS"' EXIT
trap 'echo "mutate: interrupted" >&2; exit 130' INT TERM

build() {
    cmake --build "$BUILD" -j "$JOBS"
}

# run_suite LOG: the CPU suite; the status is ctest's. Tests without a TIMEOUT of their own get 300 s
# (a mutant may make one hang).
CTEST_ARGS=(-L cpu -LE "fuzz|rooms" --output-on-failure --timeout 300 -j "$JOBS")
[ "$ALL" = 1 ] || CTEST_ARGS+=(--stop-on-failure)
run_suite() {
    (cd "$BUILD" && ctest "${CTEST_ARGS[@]}") >>"$1" 2>&1
}

# failed_tests LOG: the tests that failed, in the order they finished (ctest's "3/79 Test #12:
# name ....***Failed" lines; a passed or skipped test is not a failure).
failed_tests() {
    grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$1" | grep -vE ' Passed |\*\*\*Skipped' |
        sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+).*/\1/'
}

# ---------------------------------------------------------------------------------------------
# The clean tree: configure, build, and the suite must pass.

CLEAN=$LOGS/clean.log
: >"$CLEAN"
t0=$SECONDS
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$SRC" -B "$BUILD" -DLLAVA_CUDA=OFF -DLLAVA_FUZZ=OFF -DLLAVA_MPI=OFF -DCMAKE_BUILD_TYPE=Release \
        >>"$CLEAN" 2>&1 || { echo "mutate: configuring failed (see $CLEAN)" >&2; exit 2; }
fi
build >>"$CLEAN" 2>&1 || { echo "mutate: the clean tree does not build (see $CLEAN)" >&2; exit 2; }
tb=$((SECONDS - t0))
if ! run_suite "$CLEAN"; then
    echo "mutate: the clean suite fails ($(failed_tests "$CLEAN" | head -n 1); see $CLEAN)" >&2
    exit 2
fi
echo "mutate: clean tree built in ${tb}s, suite passed in $((SECONDS - t0 - tb))s"

# ---------------------------------------------------------------------------------------------
# The mutants

R_RESULT=()
R_BY=()
R_SECS=()
bad=0
for i in "${SEL[@]}"; do
    name=${M_NAME[i]}
    log=$LOGS/$name.log
    {
        echo "mutant $name: ${M_BUG[i]}"
        echo "file ${M_FILE[i]}"
        echo "--- original"
        cat "$TEXTS/$i.orig"
        echo
        echo "--- mutant"
        cat "$TEXTS/$i.repl"
        echo
        echo "---"
    } >"$log"
    t0=$SECONDS
    printf 'mutate: %-28s ' "$name"
    result="" by=""
    if [ ! -f "$SRC/${M_FILE[i]}" ]; then
        result="NOT-APPLIED"
        by="no file ${M_FILE[i]}"
    else
        cp "$SRC/${M_FILE[i]}" "$DIR/orig" || exit 2
        CURRENT=${M_FILE[i]}
        if ! why=$(apply "$SRC" "$i" 2>&1); then
            result="NOT-APPLIED"
            by=$why
        elif ! build >>"$log" 2>&1; then
            result="BUILD-FAILED"
            by="see $log"
        elif run_suite "$log"; then
            result="SURVIVED"
        else
            by=$(failed_tests "$log" | head -n 1)
            if [ -n "$by" ]; then
                result=killed
                if [ "$ALL" = 1 ]; then
                    by=$(failed_tests "$log" | paste -sd, - | sed 's/,/, /g')
                else
                    nf=$(failed_tests "$log" | wc -l)
                    [ "$nf" -le 1 ] || by="$by (+$((nf - 1)) more)"
                fi
            else
                result="ERROR"
                by="ctest failed without a failing test (see $log)"
            fi
        fi
        restore
    fi
    [ "$result" = killed ] || bad=1
    [ -n "$by" ] || by="-"
    R_RESULT+=("$result")
    R_BY+=("$by")
    R_SECS+=("$((SECONDS - t0))")
    echo "result: $result $by" >>"$log"
    printf '%-12s %s (%ss)\n' "$result" "$by" "$((SECONDS - t0))"
done

# ---------------------------------------------------------------------------------------------
# The table

n_killed=0
for r in "${R_RESULT[@]}"; do [ "$r" = killed ] && n_killed=$((n_killed + 1)); done
summary="$n_killed of ${#SEL[@]} mutants killed"
{
    echo "mutation check, $(date -u +%Y-%m-%d), commit $COMMIT: $summary"
    printf '%-28s %-12s %-6s %s\n' mutant result secs "failing tests (in the order they failed)"
    for k in "${!SEL[@]}"; do
        printf '%-28s %-12s %-6s %s\n' "${M_NAME[${SEL[k]}]}" "${R_RESULT[k]}" "${R_SECS[k]}" "${R_BY[k]}"
    done
} >"$DIR/results.txt"
{
    echo "Run of $(date -u +%Y-%m-%d), commit \`$COMMIT\`: $summary."
    echo
    echo "| mutant | bug | result | failing tests (in the order they failed) |"
    echo "|---|---|---|---|"
    for k in "${!SEL[@]}"; do
        j=${SEL[k]}
        echo "| \`${M_NAME[j]}\` | ${M_BUG[j]} | ${R_RESULT[k]} | ${R_BY[k]} |"
    done
} >"$DIR/results.md"
echo
cat "$DIR/results.txt"
if [ "$bad" = 0 ] && [ "$KEEP" = 0 ]; then
    rm -rf "$DIR"
elif [ "$bad" != 0 ]; then
    echo "mutate: not every mutant was killed; logs in $LOGS"
else
    echo "mutate: kept $DIR"
fi
exit "$bad"
