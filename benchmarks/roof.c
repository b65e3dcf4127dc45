/* The roofs of the speed chapter's roofline, measured (compiled and run by benchmarks/speed.py).

   ./roof fma ITERATIONS            fused multiply-adds on independent vector registers: GMAC/s
   ./roof read BYTES REPEATS        each thread sums its own buffer of BYTES, REPEATS times: GB/s
   ./roof dw CHANNELS SIZE CALLS    a 3x3 stride-1 depthwise convolution of CHANNELS channels on a
                                    SIZE x SIZE map, CALLS times: GMAC/s (the median of 5 runs)

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

/* A 3x3, stride-1 depthwise convolution in the blocked layout of oneDNN and ONNX Runtime (MLAS):
   channels in blocks of LANES, one vector register per pixel of a block. Like their kernels it
   keeps UNROLL outputs of one row in registers and, for every tap, takes one weight vector and,
   per output, loads one input vector and does one FMA: one load per vector FMA. Unlike them it
   reads an input padded in advance (no edge cases) and keeps all nine weight vectors of a block in
   registers, so it shows what the loop structure itself allows.
   in: [blocks][size + 2][size + 2] vectors; w: [blocks][9]; out: [blocks][size][size]. */
#define UNROLL 4

static void dw_call(const vf *in, const vf *w, vf *out, int blocks, int size) {
    int padded = size + 2;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const vf *x = in + (long)b * padded * padded;
        vf k[9];
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) k[t] = w[b * 9 + t];
        vf *y = out + (long)b * size * size;
        for (int oh = 0; oh < size; oh++) {
            int ow = 0;
            for (; ow + UNROLL <= size; ow += UNROLL) {
                vf acc[UNROLL];
#pragma GCC unroll 4
                for (int u = 0; u < UNROLL; u++) acc[u] = splat(0.0f);
#pragma GCC unroll 3
                for (int kh = 0; kh < 3; kh++)
#pragma GCC unroll 3
                    for (int kw = 0; kw < 3; kw++) {
                        const vf *row = x + (long)(oh + kh) * padded + ow + kw;
#pragma GCC unroll 4
                        for (int u = 0; u < UNROLL; u++) acc[u] += row[u] * k[kh * 3 + kw];
                    }
#pragma GCC unroll 4
                for (int u = 0; u < UNROLL; u++) y[oh * size + ow + u] = acc[u];
            }
            for (; ow < size; ow++) {
                vf acc = splat(0.0f);
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++)
                        acc += x[(long)(oh + kh) * padded + ow + kw] * k[kh * 3 + kw];
                y[oh * size + ow] = acc;
            }
        }
    }
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int dw_run(int channels, int size, long calls) {
    int blocks = (channels + LANES - 1) / LANES, padded = size + 2;
    vf *in = aligned_alloc(64, (long)blocks * padded * padded * VB);
    vf *w = aligned_alloc(64, (long)blocks * 9 * VB);
    vf *out = aligned_alloc(64, (long)blocks * size * size * VB);
    for (long i = 0; i < (long)blocks * padded * padded; i++) in[i] = splat((float)(i % 5));
    for (long i = 0; i < (long)blocks * 9; i++) w[i] = splat(0.1f * (float)(i % 3));
    for (long c = 0; c < calls; c++) dw_call(in, w, out, blocks, size); /* warm-up */
    double rates[5];
    for (int r = 0; r < 5; r++) {
        double start = omp_get_wtime();
        for (long c = 0; c < calls; c++) dw_call(in, w, out, blocks, size);
        double seconds = omp_get_wtime() - start;
        rates[r] = 9.0 * channels * size * size * calls / seconds / 1e9;
    }
    qsort(rates, 5, sizeof(double), compare_doubles);
    for (int b = 0; b < blocks; b++) /* every output against a plain loop over the taps */
        for (int oh = 0; oh < size; oh++)
            for (int ow = 0; ow < size; ow++)
                for (int lane = 0; lane < LANES; lane++) {
                    float expected = 0;
                    for (int t = 0; t < 9; t++)
                        expected += in[((long)b * padded + oh + t / 3) * padded + ow + t % 3][lane]
                                    * w[b * 9 + t][lane];
                    float got = out[((long)b * size + oh) * size + ow][lane];
                    if (got - expected > 1e-4f || expected - got > 1e-4f) {
                        fprintf(stderr, "dw: wrong output at block %d, (%d, %d)\n", b, oh, ow);
                        return 3;
                    }
                }
    printf("%.6f %d %d %g\n", rates[2], LANES, UNROLL, (double)lanes_sum(out[size]));
    free(in);
    free(w);
    free(out);
    return 0;
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
    if (argc >= 5 && strcmp(argv[1], "dw") == 0)
        return dw_run(atoi(argv[2]), atoi(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: roof fma ITERATIONS | roof read BYTES REPEATS | "
                    "roof dw CHANNELS SIZE CALLS\n");
    return 2;
}
