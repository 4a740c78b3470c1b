#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "trnsim/core/numeric.h"

namespace {

using trnsim::DType;

const float k_inf = std::numeric_limits<float>::infinity();
const float k_nan = std::numeric_limits<float>::quiet_NaN();

float p2(int e) {
    return std::ldexp(1.0f, e);
}

std::uint32_t bits_of(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

float float_of(std::uint32_t u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// Independent bfloat16 reference: the usual round-half-even on the binary32 bit pattern.
float bf16_bit_reference(float x) {
    std::uint32_t u = bits_of(x);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return float_of(u & 0xFFFF0000u);
}

// Independent reference for the small formats: decode every non-negative finite encoding, then pick the
// nearest by search. Consecutive encodings alternate their mantissa LSB, so "ties to even" is "ties to
// the even index".
struct Table {
    std::vector<float> values;  // values[i] = value of code i, ascending
    bool saturate;
    float max_finite;
};

Table make_table(int ebits, int mbits, int bias, int n_finite_codes, bool saturate, bool append_inf_step) {
    Table t;
    t.saturate = saturate;
    for (int code = 0; code < n_finite_codes; ++code) {
        int e = code >> mbits;
        int m = code & ((1 << mbits) - 1);
        float v = e == 0 ? std::ldexp(static_cast<float>(m), 1 - bias - mbits)
                         : std::ldexp(static_cast<float>((1 << mbits) + m), e - bias - mbits);
        t.values.push_back(v);
    }
    t.max_finite = t.values.back();
    // For IEEE-style overflow the next code (all-ones exponent, even index) stands for infinity at the
    // value 2^(emax+1), which gives the correct round-to-inf threshold max + half ulp (tie -> inf).
    if (append_inf_step) t.values.push_back(std::ldexp(1.0f, (1 << ebits) - 1 - bias));
    return t;
}

float table_round(const Table& t, float x) {
    if (std::isnan(x)) return x;
    float a = std::fabs(x);
    float r;
    if (a >= t.values.back()) {
        r = t.values.back();
    } else {
        auto it = std::upper_bound(t.values.begin(), t.values.end(), a);
        std::size_t hi = static_cast<std::size_t>(it - t.values.begin());
        std::size_t lo = hi - 1;
        double dlo = static_cast<double>(a) - t.values[lo];
        double dhi = static_cast<double>(t.values[hi]) - a;
        std::size_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
        r = t.values[pick];
    }
    if (r > t.max_finite) r = t.saturate ? t.max_finite : k_inf;
    return std::copysign(r, x);
}

const Table& e4m3_table() {
    static const Table t = make_table(4, 3, 7, 0x7F, true, false);  // 0x7F = S.1111.111 is NaN
    return t;
}
const Table& e5m2_table() {
    static const Table t = make_table(5, 2, 15, 0x7C, true, false);  // 0x7C = inf
    return t;
}
const Table& fp16_table() {
    static const Table t = make_table(5, 10, 15, 0x7C00, false, true);
    return t;
}

// Test inputs: every representable value of the table, every midpoint (an exact tie), the neighbours of
// each midpoint one float ulp away, and random log-uniform magnitudes; all with both signs.
std::vector<float> probe_values(const Table& t, int seed) {
    std::vector<float> xs;
    for (std::size_t i = 0; i < t.values.size(); ++i) {
        xs.push_back(t.values[i]);
        if (i + 1 < t.values.size()) {
            float mid = (t.values[i] + t.values[i + 1]) / 2;
            xs.push_back(mid);
            xs.push_back(std::nextafter(mid, 0.0f));
            xs.push_back(std::nextafter(mid, k_inf));
        }
    }
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> log2mag(-30.0f, 20.0f);
    for (int i = 0; i < 20000; ++i) xs.push_back(std::exp2(log2mag(rng)));
    std::size_t n = xs.size();
    for (std::size_t i = 0; i < n; ++i) xs.push_back(-xs[i]);
    return xs;
}

std::vector<float> log_sweep(float lo, float hi, int steps) {
    std::vector<float> xs;
    for (int i = 0; i <= steps; ++i) {
        double t = static_cast<double>(i) / steps;
        float x = static_cast<float>(std::exp(std::log(double(lo)) * (1 - t) + std::log(double(hi)) * t));
        xs.push_back(-x);
        xs.push_back(x);
    }
    xs.push_back(0.0f);
    std::sort(xs.begin(), xs.end());
    return xs;
}

const DType k_all_dtypes[] = {DType::fp32, DType::bf16, DType::fp16, DType::fp8_e4m3, DType::fp8_e5m2};

}  // namespace

TEST_CASE("bf16 rounds ties to even and keeps representable values", "[numeric]") {
    CHECK(trnsim::round_bf16(1.00390625f) == 1.0f);                                 // 1 + 2^-8: tie, 1.0 is even
    CHECK(trnsim::round_bf16(1.0f + p2(-7)) == 1.0f + p2(-7));                      // representable, stays
    CHECK(trnsim::round_bf16(1.0f + 3 * p2(-8)) == 1.0f + p2(-6));                  // tie, odd LSB rounds up
    CHECK(trnsim::round_bf16(std::nextafter(1.00390625f, 2.0f)) == 1.0f + p2(-7));  // above the tie
    CHECK(trnsim::round_bf16(-1.00390625f) == -1.0f);
    CHECK(trnsim::round_bf16(3.14159265f) == 3.140625f);
    CHECK(trnsim::round_bf16(p2(-133)) == p2(-133));              // bf16 min subnormal
    CHECK(trnsim::round_bf16(127 * p2(-133)) == 127 * p2(-133));  // bf16 max subnormal
    CHECK(trnsim::round_bf16(p2(-134)) == 0.0f);                  // tie between 0 and 2^-133 -> 0
    CHECK(trnsim::round_bf16(p2(-149)) == 0.0f);                  // float-only subnormal
    CHECK(trnsim::round_bf16(3 * p2(-134)) == 2 * p2(-133));      // 1.5 quanta, tie to 2
    CHECK(trnsim::round_bf16(0x1.FEp127f) == 0x1.FEp127f);        // bf16 max
    CHECK(trnsim::round_bf16(std::numeric_limits<float>::max()) == k_inf);
}

TEST_CASE("bf16 agrees with the bit-pattern reference on random float bit patterns", "[numeric]") {
    std::mt19937 rng(7);
    for (int i = 0; i < 200000; ++i) {
        float x = float_of(static_cast<std::uint32_t>(rng()));
        if (std::isnan(x)) continue;
        float got = trnsim::round_bf16(x);
        float want = bf16_bit_reference(x);
        INFO("x = " << x << " bits " << std::hex << bits_of(x));
        REQUIRE(bits_of(got) == bits_of(want));
    }
}

TEST_CASE("bf16 and fp16 keep infinities and NaN, and fp16 overflows to infinity", "[numeric]") {
    CHECK(trnsim::round_bf16(k_inf) == k_inf);
    CHECK(trnsim::round_bf16(-k_inf) == -k_inf);
    CHECK(trnsim::round_fp16(k_inf) == k_inf);
    CHECK(trnsim::round_fp16(-k_inf) == -k_inf);
    CHECK(std::isnan(trnsim::round_bf16(k_nan)));
    CHECK(std::isnan(trnsim::round_fp16(k_nan)));
    CHECK(std::isnan(trnsim::round_to(DType::fp32, k_nan)));
    CHECK(trnsim::round_fp16(65519.99f) == 65504.0f);
    CHECK(trnsim::round_fp16(65520.0f) == k_inf);  // max + half ulp ties to the even "2^16" -> inf
    CHECK(trnsim::round_fp16(-1e6f) == -k_inf);
}

TEST_CASE("fp16 holds 65504 and rounds subnormals to multiples of 2^-24", "[numeric]") {
    CHECK(trnsim::round_fp16(65504.0f) == 65504.0f);
    CHECK(trnsim::round_fp16(65500.0f) == 65504.0f);
    CHECK(trnsim::round_fp16(1.0f + p2(-11)) == 1.0f);  // tie to even
    CHECK(trnsim::round_fp16(1.0f + 3 * p2(-11)) == 1.0f + p2(-9));
    CHECK(trnsim::round_fp16(p2(-24)) == p2(-24));  // min subnormal
    CHECK(trnsim::round_fp16(p2(-25)) == 0.0f);     // tie between 0 and 2^-24 -> 0
    CHECK(trnsim::round_fp16(1.5f * p2(-25)) == p2(-24));
    CHECK(trnsim::round_fp16(3 * p2(-25)) == 2 * p2(-24));        // 1.5 quanta, tie to 2
    CHECK(trnsim::round_fp16(1023 * p2(-24)) == 1023 * p2(-24));  // max subnormal
    CHECK(trnsim::round_fp16(p2(-14)) == p2(-14));                // min normal
    CHECK(std::signbit(trnsim::round_fp16(-p2(-30))));            // underflow keeps the sign
}

TEST_CASE("fp8 e4m3 saturates at 448 and rounds subnormals to multiples of 2^-9", "[numeric]") {
    CHECK(trnsim::round_fp8_e4m3(448.0f) == 448.0f);
    CHECK(trnsim::round_fp8_e4m3(464.0f) == 448.0f);  // tie between 448 and (NaN code) 480, saturates
    CHECK(trnsim::round_fp8_e4m3(470.0f) == 448.0f);
    CHECK(trnsim::round_fp8_e4m3(1e9f) == 448.0f);
    CHECK(trnsim::round_fp8_e4m3(-1e9f) == -448.0f);
    CHECK(trnsim::round_fp8_e4m3(k_inf) == 448.0f);
    CHECK(trnsim::round_fp8_e4m3(-k_inf) == -448.0f);
    CHECK(std::isnan(trnsim::round_fp8_e4m3(k_nan)));
    CHECK(trnsim::round_fp8_e4m3(416.0f) == 416.0f);
    CHECK(trnsim::round_fp8_e4m3(432.0f) == 448.0f);         // tie between 416 (odd) and 448 (even)
    CHECK(trnsim::round_fp8_e4m3(1.0625f) == 1.0f);          // tie, 1.0 is even
    CHECK(trnsim::round_fp8_e4m3(1.1875f) == 1.25f);         // tie, 1.125 is odd
    CHECK(trnsim::round_fp8_e4m3(0.0017578125f) == p2(-9));  // 0.9 * 2^-9 -> min subnormal
    CHECK(trnsim::round_fp8_e4m3(p2(-10)) == 0.0f);          // tie between 0 and 2^-9 -> 0
    CHECK(trnsim::round_fp8_e4m3(std::nextafter(p2(-10), 1.0f)) == p2(-9));
    CHECK(trnsim::round_fp8_e4m3(3 * p2(-10)) == 2 * p2(-9));  // 1.5 quanta, tie to 2
    CHECK(trnsim::round_fp8_e4m3(5 * p2(-9)) == 5 * p2(-9));   // subnormal, exact
    CHECK(trnsim::round_fp8_e4m3(7.5f * p2(-9)) == p2(-6));    // max subnormal + half -> min normal
    CHECK(trnsim::round_fp8_e4m3(p2(-6)) == p2(-6));
}

TEST_CASE("fp8 e5m2 saturates at 57344 and has subnormal step 2^-16", "[numeric]") {
    CHECK(trnsim::round_fp8_e5m2(57344.0f) == 57344.0f);
    CHECK(trnsim::round_fp8_e5m2(61440.0f) == 57344.0f);  // max + half ulp saturates
    CHECK(trnsim::round_fp8_e5m2(1e30f) == 57344.0f);
    CHECK(trnsim::round_fp8_e5m2(k_inf) == 57344.0f);
    CHECK(trnsim::round_fp8_e5m2(-k_inf) == -57344.0f);
    CHECK(std::isnan(trnsim::round_fp8_e5m2(k_nan)));
    CHECK(trnsim::round_fp8_e5m2(49152.0f) == 49152.0f);
    CHECK(trnsim::round_fp8_e5m2(1.125f) == 1.0f);      // tie, 1.0 is even
    CHECK(trnsim::round_fp8_e5m2(1.375f) == 1.5f);      // tie, 1.25 is odd
    CHECK(trnsim::round_fp8_e5m2(p2(-16)) == p2(-16));  // min subnormal
    CHECK(trnsim::round_fp8_e5m2(p2(-17)) == 0.0f);     // tie to 0
    CHECK(trnsim::round_fp8_e5m2(1.01f * p2(-17)) == p2(-16));
    CHECK(trnsim::round_fp8_e5m2(3 * p2(-16)) == 3 * p2(-16));  // max subnormal
    CHECK(trnsim::round_fp8_e5m2(p2(-14)) == p2(-14));          // min normal
}

TEST_CASE("fp16 and fp8 rounding agree with a nearest-value search over all encodings", "[numeric]") {
    struct Case {
        const char* name;
        const Table& table;
        float (*fn)(float);
    };
    const Case cases[] = {{"fp8_e4m3", e4m3_table(), trnsim::round_fp8_e4m3},
                          {"fp8_e5m2", e5m2_table(), trnsim::round_fp8_e5m2},
                          {"fp16", fp16_table(), trnsim::round_fp16}};
    int seed = 1;
    for (const Case& c : cases) {
        for (float x : probe_values(c.table, seed++)) {
            float got = c.fn(x);
            float want = table_round(c.table, x);
            INFO(c.name << " x = " << x);
            REQUIRE(bits_of(got) == bits_of(want));
        }
    }
    CHECK(e4m3_table().max_finite == 448.0f);
    CHECK(e5m2_table().max_finite == 57344.0f);
    CHECK(fp16_table().max_finite == 65504.0f);
}

TEST_CASE("Rounding is monotonic over a sweep of magnitudes", "[numeric]") {
    std::vector<float> xs = log_sweep(p2(-30), 1e6f, 40000);
    for (DType t : k_all_dtypes) {
        float prev = -k_inf;
        for (float x : xs) {
            float r = trnsim::round_to(t, x);
            INFO(trnsim::dtype_name(t) << " x = " << x);
            REQUIRE(r >= prev);
            prev = r;
        }
    }
}

TEST_CASE("Rounding twice gives the same value as rounding once", "[numeric]") {
    std::vector<float> xs = log_sweep(p2(-30), 1e6f, 40000);
    xs.push_back(k_inf);
    xs.push_back(-k_inf);
    for (DType t : k_all_dtypes) {
        for (float x : xs) {
            float once = trnsim::round_to(t, x);
            INFO(trnsim::dtype_name(t) << " x = " << x);
            REQUIRE(bits_of(trnsim::round_to(t, once)) == bits_of(once));
        }
    }
}

TEST_CASE("Relative rounding error is at most half an ulp in the normal range", "[numeric]") {
    struct Bound {
        DType t;
        float min_normal;
        float max_finite;
        float rel;
    };
    const Bound bounds[] = {{DType::bf16, p2(-126), 1e38f, p2(-8)},
                            {DType::fp16, p2(-14), 65504.0f, p2(-11)},
                            {DType::fp8_e4m3, p2(-6), 448.0f, p2(-4)},
                            {DType::fp8_e5m2, p2(-14), 57344.0f, p2(-3)}};
    for (const Bound& b : bounds) {
        for (float x : log_sweep(b.min_normal, b.max_finite, 20000)) {
            if (x == 0.0f) continue;
            float r = trnsim::round_to(b.t, x);
            double rel = std::fabs(static_cast<double>(r) - x) / std::fabs(static_cast<double>(x));
            INFO(trnsim::dtype_name(b.t) << " x = " << x << " r = " << r);
            REQUIRE(rel <= b.rel);
        }
    }
    CHECK(trnsim::round_to(DType::fp32, 1.2345678f) == 1.2345678f);
}

TEST_CASE("An MX block whose max is 1.0 uses scale 2^-8 with e4m3 elements", "[numeric][mx]") {
    std::vector<float> in(32);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (float& v : in) v = dist(rng);
    in[0] = 1.0f;
    in[1] = p2(-8);   // element 1.0
    in[2] = p2(-17);  // element 2^-9, the e4m3 min subnormal: kept only if X = 2^-8
    in[3] = p2(-18);  // element 2^-10: ties to 0
    in[4] = -0.3f;
    std::vector<float> out(32);
    trnsim::quantize_mxfp8_e4m3(in.data(), out.data(), 32);
    CHECK(out[0] == 1.0f);
    CHECK(out[1] == p2(-8));
    CHECK(out[2] == p2(-17));
    CHECK(out[3] == 0.0f);
    CHECK(out[4] == trnsim::round_fp8_e4m3(-0.3f * 256.0f) / 256.0f);
    for (int i = 0; i < 32; ++i) {
        INFO("i = " << i << " in = " << in[i]);
        REQUIRE(out[i] == trnsim::round_fp8_e4m3(in[i] * 256.0f) / 256.0f);
        if (std::fabs(in[i]) >= p2(-6) / 256.0f) {  // element in the e4m3 normal range
            REQUIRE(std::fabs(out[i] - in[i]) <= p2(-4) * std::fabs(in[i]));
        }
    }
}

TEST_CASE("An MX block element above 448 times the scale saturates", "[numeric][mx]") {
    // max 1.9: X = 2^(0 - 8), 1.9 / X = 486.4 is beyond e4m3 max, so it clamps to 448 * 2^-8 = 1.75.
    std::vector<float> in = {1.9f, -1.9f, 0.5f};
    std::vector<float> out(in.size());
    trnsim::quantize_mxfp8_e4m3(in.data(), out.data(), static_cast<int>(in.size()));
    CHECK(out[0] == 1.75f);
    CHECK(out[1] == -1.75f);
    CHECK(out[2] == 0.5f);
}

TEST_CASE("A zero MX block stays zero and blocks are scaled independently", "[numeric][mx]") {
    const int n = 40;  // one full block of 32 and a partial block of 8
    std::vector<float> in(n, 0.0f);
    in[5] = -0.0f;
    for (int i = 32; i < n; ++i) in[i] = (i - 31) * p2(-20);  // tiny values: need their own scale
    std::vector<float> out(n, 123.0f);
    trnsim::quantize_mxfp8_e4m3(in.data(), out.data(), n);
    for (int i = 0; i < 32; ++i) REQUIRE(out[i] == 0.0f);
    CHECK(std::signbit(out[5]));
    // Partial block max 8 * 2^-20: X = 2^(-17 - 8) = 2^-25, elements 2^5..2^8 are exact in e4m3.
    for (int i = 32; i < n; ++i) {
        INFO("i = " << i);
        REQUIRE(out[i] == in[i]);
    }
    // The same values sharing a block with 1.0 would be flushed (1 * 2^-20 / 2^-8 = 2^-12 < 2^-10).
    std::vector<float> mixed = {1.0f, p2(-20)};
    std::vector<float> mixed_out(2);
    trnsim::quantize_mxfp8_e4m3(mixed.data(), mixed_out.data(), 2);
    CHECK(mixed_out[1] == 0.0f);
}

TEST_CASE("An MX block with NaN or inf becomes NaN without touching other blocks", "[numeric][mx]") {
    std::vector<float> in = {1.0f, k_nan, 2.0f, 3.0f, 0.5f, k_inf, 0.25f, 1.0f};
    std::vector<float> out(in.size());
    trnsim::quantize_mxfp8_e4m3(in.data(), out.data(), 8, 2);
    CHECK(std::isnan(out[0]));
    CHECK(std::isnan(out[1]));
    CHECK(out[2] == 2.0f);
    CHECK(out[3] == 3.0f);
    CHECK(std::isnan(out[4]));
    CHECK(std::isnan(out[5]));
    CHECK(out[6] == 0.25f);
    CHECK(out[7] == 1.0f);
}

TEST_CASE("MX quantization works in place with a custom block size", "[numeric][mx]") {
    std::vector<float> v = {1.0f, 0.3f, 0.7f, 100.0f, 3.3f};
    std::vector<float> want(v.size());
    trnsim::quantize_mxfp8_e4m3(v.data(), want.data(), 5, 3);
    trnsim::quantize_mxfp8_e4m3(v.data(), v.data(), 5, 3);
    for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(v[i] == want[i]);
    CHECK(v[3] == 96.0f);  // block {100, 3.3}: X = 2^(6 - 8), 400 -> 384 (e4m3 step 32 in [256, 448])
}

TEST_CASE("Dtypes have names and byte sizes and parse from their names", "[numeric]") {
    CHECK(trnsim::dtype_bytes(DType::fp32) == 4);
    CHECK(trnsim::dtype_bytes(DType::bf16) == 2);
    CHECK(trnsim::dtype_bytes(DType::fp16) == 2);
    CHECK(trnsim::dtype_bytes(DType::fp8_e4m3) == 1);
    CHECK(trnsim::dtype_bytes(DType::fp8_e5m2) == 1);
    for (DType t : k_all_dtypes) {
        DType parsed = DType::fp32;
        REQUIRE(trnsim::parse_dtype(trnsim::dtype_name(t), parsed));
        CHECK(parsed == t);
    }
    CHECK(std::string(trnsim::dtype_name(DType::fp8_e5m2)) == "fp8_e5m2");
    DType d = DType::fp32;
    CHECK(trnsim::parse_dtype("fp8", d));
    CHECK(d == DType::fp8_e4m3);
    d = DType::bf16;
    CHECK_FALSE(trnsim::parse_dtype("fp7", d));
    CHECK_FALSE(trnsim::parse_dtype("", d));
    CHECK_FALSE(trnsim::parse_dtype("fp8_e4m3x", d));
    CHECK(d == DType::bf16);  // untouched on failure
}
