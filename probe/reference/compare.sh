#!/bin/sh
# Runs the C reference loops (built dynamic, as plain `gcc -O2` does, and static, like the
# probe) and `vmm-probe bench` in turn, ROUNDS times, on the same probe binary; prints every
# round and the medians (see README.md).
# Usage: compare.sh PROBE [ROUNDS]
set -eu
probe=$1
rounds=${2:-7}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
gcc -O2 -o "$dir/loops" "$here/loops.c"
gcc -O2 -static -o "$dir/loops-static" "$here/loops.c"

# One line per round: syscall ns (C, C static, probe), fork+exec µs (C, C static, probe).
i=1
while [ "$i" -le "$rounds" ]; do
    c=$("$dir/loops" "$probe" | awk '{printf "%s ", $2}')
    s=$("$dir/loops-static" "$probe" | awk '{printf "%s ", $2}')
    p=$("$probe" bench --cpu-work 1000 --io-dir "$dir" |
        sed -n 's/.*"null_syscall_ns":\([^,]*\),"fork_exec_us":\([^,]*\),.*/\1 \2/p')
    # shellcheck disable=SC2086
    set -- $c $s $p
    echo "$1 $3 $5 $2 $4 $6"
    i=$((i + 1))
done >"$dir/rounds"

median() {
    sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
minimum() {
    sort -n | head -n 1
}
echo "         null syscall (ns)                 fork+exec (us)"
echo "round    C         C static  probe       C         C static  probe"
awk '{printf "%-8d %-9.1f %-9.1f %-9.1f   %-9.1f %-9.1f %-9.1f\n", NR, $1, $2, $3, $4, $5, $6}' "$dir/rounds"
for stat in median minimum; do
    printf '%-8s' "$stat"
    for col in 1 2 3 4 5 6; do
        [ "$col" = 4 ] && printf '  '
        printf ' %-9.1f' "$(awk -v c="$col" '{print $c}' "$dir/rounds" | "$stat")"
    done
    printf '\n'
done
