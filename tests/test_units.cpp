#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "trnsim/core/clock.h"
#include "trnsim/core/error.h"
#include "trnsim/core/units.h"

using namespace trnsim;

TEST_CASE("frequencies parse with their unit", "[units]") {
    CHECK(parse_frequency("2.4GHz").hz == Approx(2.4e9));
    CHECK(parse_frequency("960MHz").hz == Approx(0.96e9));
    CHECK(parse_frequency(" 1.4 GHz ").hz == Approx(1.4e9));
    CHECK(parse_frequency("100kHz").hz == Approx(1e5));
}

TEST_CASE("decimal and binary prefixes are different and both understood", "[units]") {
    CHECK(parse_bandwidth("2.9TB/s").bytes_per_s == Approx(2.9e12));
    CHECK(parse_bandwidth("820GiB/s").bytes_per_s == Approx(820.0 * 1024 * 1024 * 1024));
    CHECK(parse_bandwidth("820GB/s").bytes_per_s == Approx(820e9));
    CHECK(parse_bandwidth("820GiB/s").bytes_per_s / parse_bandwidth("820GB/s").bytes_per_s == Approx(1.073741824));
    CHECK(parse_bytes("96GiB").count == 96ull << 30);
    CHECK(parse_bytes("96GB").count == 96000000000ull);
    CHECK(parse_bytes("192KiB").count == 192u * 1024u);
    CHECK(parse_bytes("2KB").count == 2000u);
}

TEST_CASE("bits per second are bytes divided by eight", "[units]") {
    CHECK(parse_bandwidth("200Gbps").bytes_per_s == Approx(25e9));
    CHECK(parse_bandwidth("200Gb/s").bytes_per_s == Approx(25e9));
}

TEST_CASE("durations parse in every unit", "[units]") {
    CHECK(parse_duration("1.3us").seconds == Approx(1.3e-6));
    CHECK(parse_duration("15ns").seconds == Approx(15e-9));
    CHECK(parse_duration("2ms").seconds == Approx(2e-3));
    CHECK(parse_duration("0s").seconds == 0.0);
}

TEST_CASE("a value without a unit or with the wrong unit is an error naming the allowed units", "[units]") {
    CHECK_THROWS_AS(parse_bandwidth("2900"), UnitError);
    CHECK_THROWS_WITH(parse_bandwidth("2900"), Catch::Contains("no unit") && Catch::Contains("GiB/s"));
    CHECK_THROWS_WITH(parse_bandwidth("2.9GHz"), Catch::Contains("unknown bandwidth unit 'GHz'"));
    CHECK_THROWS_AS(parse_frequency("fast"), UnitError);
    CHECK_THROWS_AS(parse_bytes("1.5B"), UnitError);
    CHECK_THROWS_AS(parse_bytes("-1KiB"), UnitError);
    CHECK_THROWS_AS(parse_duration("3 weeks"), UnitError);
    // Not a number, or none that fits: said as such, not as an unknown unit.
    CHECK_THROWS_WITH(parse_bandwidth("nanGB/s"), Catch::Contains("must be finite"));
    CHECK_THROWS_WITH(parse_bytes("infB"), Catch::Contains("must be finite"));
    CHECK_THROWS_WITH(parse_bytes("99999999999999999999999B"), Catch::Contains("at most 2^64 - 1 B"));
}

TEST_CASE("quantities print in a unit that parses back to the same value", "[units]") {
    for (const char* text : {"2.4GHz", "960MHz", "1.12GHz"}) {
        CHECK(parse_frequency(to_string(parse_frequency(text))).hz == parse_frequency(text).hz);
    }
    CHECK(to_string(parse_bytes("192KiB")) == "192KiB");
    CHECK(to_string(parse_bytes("24MiB")) == "24MiB");
    CHECK(to_string(Bytes{1000}) == "1000B");
    CHECK(to_string(parse_bandwidth("2.9TB/s")) == "2.9TB/s");
    CHECK(to_string(Duration{1.3e-6}) == "1.3us");
}

TEST_CASE("clock edges are exact: ceil(cycle * 1e15 / hz) fs, and cycle_at_or_after inverts them", "[units][clock]") {
    // 800 MHz: a whole-femtosecond period; 2.4 GHz and 1.12 GHz: not (416666.67 fs, 892857.14 fs).
    CHECK(ClockDomain(800e6).edge_fs(3) == 3750000);
    CHECK(ClockDomain(2.4e9).edge_fs(1) == 416667);
    CHECK(ClockDomain(2.4e9).edge_fs(3) == 1250000);
    CHECK(ClockDomain(2.4e9).edge_fs(1000000000000LL) == 416666666666666667ULL);  // beyond 64-bit products
    CHECK(ClockDomain(parse_frequency("1.12GHz").hz).edge_fs(7) == 6250000);
    std::mt19937_64 rng(7);
    for (const double hz : {800e6, 1.6e9, 2.4e9, 1.12e9, 1.4e9, 2.8e9, 3e9, 1e9 / 3}) {
        const ClockDomain clock(hz);
        for (int i = 0; i < 2000; ++i) {
            const auto c = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << (i % 2 ? 20 : 40)));
            const std::uint64_t e = clock.edge_fs(c);
            if (hz != 1e9 / 3) {  // integral: e is the least femtosecond with e * hz >= c * 1e15
                const auto f = static_cast<unsigned __int128>(std::llround(hz));
                const auto target = static_cast<unsigned __int128>(c) * 1000000000000000ULL;
                CHECK(static_cast<unsigned __int128>(e) * f >= target);
                if (e > 0) CHECK(static_cast<unsigned __int128>(e - 1) * f < target);
            }
            CHECK(clock.cycle_at_or_after(e) == c);
            CHECK(clock.cycle_at_or_after(e + 1) == c + 1);
            if (c > 0) CHECK(clock.edge_fs(c - 1) < e);
        }
    }
}
