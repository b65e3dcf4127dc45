/* The roofs of the speed chapter's roofline, measured (compiled and run by benchmarks/speed.py).

   ./roof fma ITERATIONS            fused multiply-adds on independent vector registers: GMAC/s
   ./roof read BYTES REPEATS        each thread sums its own buffer of BYTES, REPEATS times: GB/s

   Threads: OMP_NUM_THREADS. Vector width: VB bytes, set at compile time (16 SSE, 32 AVX2, 64
   AVX-512). The compiler contracts a * b + c into one FMA instruction (-ffp-contract=fast). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VB
#define VB 32
#endif
#define LANES (VB / 4)
#define CHAINS 12 /* independent FMAs in flight: more than latency x FMA units */
#define SUMS 8    /* independent additions per loaded vector group */

typedef float vf __attribute__((vector_size(VB)));

static vf splat(float x) {
    vf v;
    for (int i = 0; i < LANES; i++) v[i] = x;
    return v;
}

static float lanes_sum(vf v) {
    float s = 0;
    for (int i = 0; i < LANES; i++) s += v[i];
    return s;
}

static double fma_run(long iterations) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        vf acc[CHAINS];
        vf a = splat(0.999999f), b = splat(1e-7f);
        for (int c = 0; c < CHAINS; c++) acc[c] = splat(1.0f + c);
        for (long i = 0; i < iterations; i++) {
#pragma GCC unroll 16
            for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * a + b;
        }
        for (int c = 0; c < CHAINS; c++) sink += lanes_sum(acc[c]);
    }
    return sink;
}

/* Sums each thread's buffer `repeats` times; returns the seconds between the two barriers
   around the loop (allocation and first touch outside the timing). */
static double read_run(long bytes, long repeats, double *sink_out) {
    double seconds = 0, sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        long n = bytes / VB;
        vf *buffer = aligned_alloc(64, n * VB);
        for (long i = 0; i < n; i++) buffer[i] = splat((float)(i % 7));
        vf s[SUMS];
        for (int k = 0; k < SUMS; k++) s[k] = splat(0.0f);
        for (long i = 0; i + SUMS <= n; i += SUMS) /* warm: the buffer into its cache */
            for (int k = 0; k < SUMS; k++) s[k] += buffer[i + k];
#pragma omp barrier
        double start = omp_get_wtime();
        for (long r = 0; r < repeats; r++)
            for (long i = 0; i + SUMS <= n; i += SUMS) {
#pragma GCC unroll 16
                for (int k = 0; k < SUMS; k++) s[k] += buffer[i + k];
            }
#pragma omp barrier
        if (omp_get_thread_num() == 0) seconds = omp_get_wtime() - start;
        for (int k = 0; k < SUMS; k++) sink += lanes_sum(s[k]);
        free(buffer);
    }
    *sink_out = sink;
    return seconds;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "fma") == 0) {
        long iterations = atol(argv[2]);
        fma_run(iterations / 10); /* warm-up: clocks up, threads started */
        double start = omp_get_wtime();
        double sink = fma_run(iterations);
        double seconds = omp_get_wtime() - start;
        double macs = (double)iterations * CHAINS * LANES * omp_get_max_threads();
        printf("%.6f %.3e %d %g\n", macs / seconds / 1e9, seconds, LANES, sink);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "read") == 0) {
        long bytes = atol(argv[2]), repeats = atol(argv[3]);
        double sink;
        double seconds = read_run(bytes, repeats, &sink);
        double total = (double)bytes * repeats * omp_get_max_threads();
        printf("%.6f %.3e %d %g\n", total / seconds / 1e9, seconds, LANES, sink);
        return 0;
    }
    fprintf(stderr, "usage: roof fma ITERATIONS | roof read BYTES REPEATS\n");
    return 2;
}
