// convcore CuPy backend: im2col and col2im for 2-D convolutions (NCHW).
//
// Compiled at run time by NVRTC through cupy.RawModule; the Python side asks for
// the template instances it launches with `name_expressions` (see _source.py:
// NAME_EXPRESSIONS).  The test suite compiles the same instances with nvcc for
// sm_80 and sm_90.
//
// The file is self-contained: no #include at all.  NVRTC has no host headers, and
// float16 is handled as its 16 raw bits with PTX conversions, so cuda_fp16.h is
// not needed either.
//
// Template parameters:
//   T  storage type: float, double or convcore_half (IEEE binary16 bits).
//   I  index type: int or long long.  The host picks int only when every index
//      the launch can form fits in 31 bits (and refuses sizes beyond long long).
//
// Geometry (all int): C channels, H x W input, KH x KW kernel, Ho x Wo output,
// sh/sw stride, pt/pl padding before (top/left), dh/dw dilation.  Padding after
// (bottom/right) only enters through Ho/Wo.
//
// Column layout: element (n, c, i, j, oh, ow) of the columns sits at
//   n * col_stride_n + ((c * KH + i) * KW + j) * col_stride_row + oh * Wo + ow
// which covers both the public im2col result (N, C*KH*KW, Ho*Wo)
// (col_stride_n = C*KH*KW*Ho*Wo, col_stride_row = Ho*Wo) and the GEMM workspace
// (C*KH*KW, n*Ho*Wo) of a batch chunk (col_stride_n = Ho*Wo,
// col_stride_row = n*Ho*Wo).  Images are contiguous (n, C, H, W).

struct convcore_half {
    unsigned short bits;
};

// binary16 <-> float32 conversions (round to nearest even).  The test suite
// compiles this file as plain C++ to run the kernels on the CPU, and defines
// these two macros itself; on the GPU they are single PTX instructions.
#ifndef CONVCORE_HALF_TO_FLOAT
#define CONVCORE_HALF_TO_FLOAT(f, h) asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h))
#endif
#ifndef CONVCORE_FLOAT_TO_HALF
#define CONVCORE_FLOAT_TO_HALF(h, f) asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f))
#endif

// Arithmetic type for sums, and conversions from/to storage.
template <typename T>
struct convcore_acc {
    typedef T type;
    static __device__ __forceinline__ T load(T v) { return v; }
    static __device__ __forceinline__ T store(T v) { return v; }
};

template <>
struct convcore_acc<convcore_half> {
    typedef float type;  // float16 sums accumulate in float32
    static __device__ __forceinline__ float load(convcore_half v) {
        float f;
        CONVCORE_HALF_TO_FLOAT(f, v.bits);
        return f;
    }
    static __device__ __forceinline__ convcore_half store(float f) {
        convcore_half h;
        CONVCORE_FLOAT_TO_HALF(h.bits, f);
        return h;
    }
};

// One thread per (n, c, oh, ow): it reads the KH*KW taps of its receptive field
// and writes them down its column.  Neighbouring threads write neighbouring
// columns, so the stores are coalesced.  Taps in the padding are written as 0.
template <typename T, typename I>
__global__ void convcore_im2col(
    const T* __restrict__ img, T* __restrict__ cols, const I total,
    const int C, const int H, const int W, const int KH, const int KW,
    const int Ho, const int Wo, const int sh, const int sw, const int pt,
    const int pl, const int dh, const int dw, const I col_stride_n,
    const I col_stride_row)
{
    const I step = (I)blockDim.x * (I)gridDim.x;
    for (I idx = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; idx < total; idx += step) {
        const int ow = (int)(idx % Wo);
        I rest = idx / Wo;
        const int oh = (int)(rest % Ho);
        rest /= Ho;
        const I c = rest % C;
        const I n = rest / C;
        const T* plane = img + (n * C + c) * ((I)H * (I)W);
        T* out = cols + n * col_stride_n + c * ((I)KH * (I)KW) * col_stride_row
                 + (I)oh * (I)Wo + (I)ow;
        const int h0 = oh * sh - pt;
        const int w0 = ow * sw - pl;
        const T zero = T();
        for (int i = 0; i < KH; ++i) {
            const int h = h0 + i * dh;
            const bool row_in = h >= 0 && h < H;
            for (int j = 0; j < KW; ++j) {
                const int w = w0 + j * dw;
                *out = (row_in && w >= 0 && w < W) ? plane[(I)h * (I)W + (I)w] : zero;
                out += col_stride_row;
            }
        }
    }
}

// col2im as a gather: one thread per image element (n, c, h, w) sums, in a fixed
// order (i, then j, ascending), every column entry that im2col read from it.  No
// atomics, so the result is bitwise reproducible (Caffe / Chainer col2im_gpu).
//
// Tap (i, j) of output (oh, ow) reads h = oh*sh - pt + i*dh, so for a given h and
// i the output row is oh = (h + pt - i*dh) / sh when that division is exact and
// 0 <= oh < Ho.  h + pt - i*dh decreases with i: once negative, no later i hits.
template <typename T, typename I>
__global__ void convcore_col2im(
    const T* __restrict__ cols, T* __restrict__ img, const I total,
    const int C, const int H, const int W, const int KH, const int KW,
    const int Ho, const int Wo, const int sh, const int sw, const int pt,
    const int pl, const int dh, const int dw, const I col_stride_n,
    const I col_stride_row)
{
    typedef typename convcore_acc<T>::type acc_t;
    const I step = (I)blockDim.x * (I)gridDim.x;
    for (I idx = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; idx < total; idx += step) {
        const int w = (int)(idx % W);
        I rest = idx / W;
        const int h = (int)(rest % H);
        rest /= H;
        const I c = rest % C;
        const I n = rest / C;
        const T* base = cols + n * col_stride_n + c * ((I)KH * (I)KW) * col_stride_row;
        acc_t sum = acc_t(0);
        for (int i = 0; i < KH; ++i) {
            const int hp = h + pt - i * dh;
            if (hp < 0) break;
            if (hp % sh != 0) continue;
            const int oh = hp / sh;
            if (oh >= Ho) continue;
            for (int j = 0; j < KW; ++j) {
                const int wp = w + pl - j * dw;
                if (wp < 0) break;
                if (wp % sw != 0) continue;
                const int ow = wp / sw;
                if (ow >= Wo) continue;
                const I offset = (I)(i * KW + j) * col_stride_row + (I)oh * (I)Wo + (I)ow;
                sum += convcore_acc<T>::load(base[offset]);
            }
        }
        img[idx] = convcore_acc<T>::store(sum);
    }
}
