#include "trnsim/core/numeric.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace trnsim {
namespace {

// A binary floating-point format narrower than (or equal in range to) IEEE binary32.
struct Format {
    int mant_bits;     // explicit fraction bits
    int emin;          // exponent of the smallest normal number (1 - bias)
    float max_finite;  // largest finite magnitude
    bool saturate;     // overflow (and inf) -> +-max_finite instead of +-inf
};

// bfloat16: same exponent range as binary32, 7 fraction bits; max = (2 - 2^-7) * 2^127.
constexpr Format k_bf16{7, -126, 0x1.FEp127f, false};
// IEEE 754 binary16: bias 15, max = (2 - 2^-10) * 2^15 = 65504.
constexpr Format k_fp16{10, -14, 65504.0f, false};
// OCP OFP8 v1.0 E4M3: bias 7, max = 1.75 * 2^8 = 448 (S.1111.111 is NaN, so 1.875 * 2^8 is not a value).
constexpr Format k_e4m3{3, -6, 448.0f, true};
// OCP OFP8 v1.0 E5M2: bias 15, max = 1.75 * 2^15 = 57344.
constexpr Format k_e5m2{2, -14, 57344.0f, true};

// Round a value in [0, 2^24) to the nearest integer, ties to even. Independent of the FP rounding mode;
// every step is exact because r has at most 24 significant bits.
float rne_integer(float r) {
    float fl = std::floor(r);
    float frac = r - fl;
    if (frac > 0.5f) return fl + 1.0f;
    if (frac < 0.5f) return fl;
    return std::fmod(fl, 2.0f) == 0.0f ? fl : fl + 1.0f;
}

// Exact round-to-nearest-even of x into format f. Works on the magnitude: find the quantum (spacing of
// representable values) at |x|'s binade, clamped to the subnormal spacing below the normal range, scale
// |x| to an integer count of quanta (exact: scaling by a power of two), round that, and scale back.
float round_format(const Format& f, float x) {
    if (std::isnan(x)) return x;
    if (std::isinf(x)) return f.saturate ? std::copysign(f.max_finite, x) : x;
    if (x == 0.0f) return x;
    float a = std::fabs(x);
    int exp = 0;
    std::frexp(a, &exp);                                        // a = m * 2^exp, m in [0.5, 1)
    int e = std::max(exp - 1, f.emin);                          // floor(log2 a), or the subnormal binade
    int qexp = e - f.mant_bits;                                 // quantum = 2^qexp
    float r = rne_integer(std::ldexp(a, -qexp));                // <= 2^(mant_bits + 1): exact
    double rounded = std::ldexp(static_cast<double>(r), qexp);  // double: no overflow for bf16 near 2^128
    float result;
    if (rounded > static_cast<double>(f.max_finite)) {
        result = f.saturate ? f.max_finite : std::numeric_limits<float>::infinity();
    } else {
        result = static_cast<float>(rounded);
    }
    return std::copysign(result, x);
}

}  // namespace

float round_bf16(float x) {
    return round_format(k_bf16, x);
}
float round_fp16(float x) {
    return round_format(k_fp16, x);
}
float round_fp8_e4m3(float x) {
    return round_format(k_e4m3, x);
}
float round_fp8_e5m2(float x) {
    return round_format(k_e5m2, x);
}

float round_to(DType t, float x) {
    switch (t) {
        case DType::fp32: return x;
        case DType::bf16: return round_bf16(x);
        case DType::fp16: return round_fp16(x);
        case DType::fp8_e4m3: return round_fp8_e4m3(x);
        case DType::fp8_e5m2: return round_fp8_e5m2(x);
    }
    return x;
}

// OCP Microscaling Formats (MX) v1.0, section 6.3 ("conversion from scalar float to MX format"),
// with MXFP8 E4M3 elements (emax_elem = 8) and an E8M0 shared scale (exponent range [-127, 127]).
void quantize_mxfp8_e4m3(const float* in, float* out, int n, int block) {
    constexpr int k_emax_elem = 8;
    constexpr int k_scale_emin = -127;
    constexpr int k_scale_emax = 127;
    if (n <= 0) return;
    if (block < 1) block = 1;
    for (int start = 0; start < n; start += block) {
        int end = std::min(n, start + block);
        float amax = 0.0f;
        bool non_finite = false;
        for (int i = start; i < end; ++i) {
            if (!std::isfinite(in[i]))
                non_finite = true;
            else
                amax = std::max(amax, std::fabs(in[i]));
        }
        if (non_finite) {
            for (int i = start; i < end; ++i) out[i] = std::numeric_limits<float>::quiet_NaN();
            continue;
        }
        if (amax == 0.0f) {
            for (int i = start; i < end; ++i) out[i] = in[i];  // +-0 stays +-0
            continue;
        }
        int exp = 0;
        std::frexp(amax, &exp);
        int scale_exp = std::clamp((exp - 1) - k_emax_elem, k_scale_emin, k_scale_emax);
        for (int i = start; i < end; ++i) {
            // Element = E4M3(v / X). |v / X| < 2^(emax_elem + 1), and dividing by a power of two is exact
            // (ldexp), so the only rounding is the element cast; values in [448, 512) saturate to 448.
            float elem = round_fp8_e4m3(std::ldexp(in[i], -scale_exp));
            out[i] = std::ldexp(elem, scale_exp);
        }
    }
}

std::size_t dtype_bytes(DType t) {
    switch (t) {
        case DType::fp32: return 4;
        case DType::bf16: return 2;
        case DType::fp16: return 2;
        case DType::fp8_e4m3: return 1;
        case DType::fp8_e5m2: return 1;
    }
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::fp32: return "fp32";
        case DType::bf16: return "bf16";
        case DType::fp16: return "fp16";
        case DType::fp8_e4m3: return "fp8_e4m3";
        case DType::fp8_e5m2: return "fp8_e5m2";
    }
    return "?";
}

bool parse_dtype(std::string_view s, DType& out) {
    constexpr DType k_all[] = {DType::fp32, DType::bf16, DType::fp16, DType::fp8_e4m3, DType::fp8_e5m2};
    for (DType t : k_all) {
        if (s == dtype_name(t)) {
            out = t;
            return true;
        }
    }
    if (s == "fp8") {
        out = DType::fp8_e4m3;
        return true;
    }
    return false;
}

}  // namespace trnsim
