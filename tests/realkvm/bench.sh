# The boot benchmark, sourced by outer-init when the outer command line has realkvm.bench=N.
run_bench() {
    echo "BENCH-DONE (not implemented yet)"
}
