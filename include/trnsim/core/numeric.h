#pragma once
// Numeric formats held by the simulated accelerator and the rounding the hardware applies when a value
// is stored in them. All rounding is round-to-nearest-even (IEEE 754-2008 roundTiesToEven); results are
// returned as float, i.e. the exact value the narrow format holds.
//
//   bf16      bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits; the top half of an IEEE binary32.
//   fp16      IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; max 65504, min
//             subnormal 2^-24, overflow rounds to inf.
//   fp8_e4m3  OCP 8-bit Floating Point Specification (OFP8) v1.0, E4M3: bias 7, max 448, min subnormal
//             2^-9, no infinities, NaN = S.1111.111.
//   fp8_e5m2  OCP OFP8 v1.0, E5M2: bias 15, max 57344, min subnormal 2^-16, IEEE-style inf/NaN.
//
// The fp8 casts saturate: a finite value beyond the largest normal, and +-inf, become +-max. This is the
// OCP "saturation mode" conversion and matches Trainium's saturating fp8 cast; NaN stays NaN everywhere.

#include <cstddef>
#include <string_view>

namespace trnsim {

enum class DType { fp32, bf16, fp16, fp8_e4m3, fp8_e5m2 };

// Round-to-nearest-even to the format, returned as float (the value the hardware would hold).
// fp32 is the identity.
float round_to(DType t, float x);
float round_bf16(float x);
float round_fp16(float x);
// OCP E4M3 (bias 7, max 448, no inf, NaN = S.1111.111); saturates to +-448 on overflow and for +-inf
// (Trainium-style saturating cast).
float round_fp8_e4m3(float x);
// OCP E5M2 (bias 15, max 57344, has inf); saturates to +-57344 on overflow and for +-inf.
float round_fp8_e5m2(float x);

// MXFP8 block quantization with E4M3 elements, per the OCP Microscaling Formats (MX) v1.0 spec, 6.3:
// for each consecutive block of `block` values (32 in OCP MX) the shared E8M0 scale is
//   X = 2^(floor(log2(max|v|)) - emax_elem),  emax_elem = 8 for E4M3,
// elements are round_fp8_e4m3(v / X) (saturating), and out receives the dequantized values element * X.
// All-zero blocks stay zero (signs of zeros are kept). The scale exponent is clamped to the E8M0 range
// [-127, 127]. A block containing NaN or inf has a NaN scale, so the whole block becomes NaN. The last
// block may be partial. `in` and `out` may alias. block must be >= 1.
void quantize_mxfp8_e4m3(const float* in, float* out, int n, int block = 32);

std::size_t dtype_bytes(DType t);  // 4, 2, 2, 1, 1
const char* dtype_name(DType t);   // "fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"
// Accepts the dtype_name spellings plus "fp8" (= fp8_e4m3). Returns false, leaving out untouched, otherwise.
bool parse_dtype(std::string_view s, DType& out);

}  // namespace trnsim
