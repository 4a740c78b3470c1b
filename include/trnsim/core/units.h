#pragma once
// Physical quantities as types. Config values carry their unit in the text ("2.4GHz", "2.9TB/s",
// "820GiB/s", "96GiB", "1.3us"); decimal prefixes (k, M, G, T = 1e3..1e12) and binary prefixes
// (Ki, Mi, Gi, Ti = 2^10..2^40) are both understood and never confused. "B" is a byte, "b" a bit.

#include <cstdint>
#include <string>
#include <string_view>

namespace trnsim {

struct Frequency {
    double hz = 0;
    double period_s() const { return 1.0 / hz; }
};

// The least a bandwidth parameter may be: 100 MB/s, below any interconnect, DMA or memory of an
// accelerator (1 GbE is 125 MB/s). Slower rates would put a packet's or a step's time past the range of the
// simulator's femtosecond clock (2^64 fs, 5.1 hours).
inline constexpr double k_min_bandwidth = 1e8;

struct Bandwidth {
    double bytes_per_s = 0;
};

struct Bytes {
    std::uint64_t count = 0;
};

struct Duration {
    double seconds = 0;
};

struct Energy {
    double joules = 0;
};

struct Power {
    double watts = 0;
};

// Each parser throws UnitError naming the accepted units when the text is not "<number><unit>".
Frequency parse_frequency(std::string_view text);
Bandwidth parse_bandwidth(std::string_view text);
Bytes parse_bytes(std::string_view text);
Duration parse_duration(std::string_view text);
Energy parse_energy(std::string_view text);
Power parse_power(std::string_view text);

// Accepted unit spellings, for error messages and docs.
const char* frequency_units();
const char* bandwidth_units();
const char* bytes_units();
const char* duration_units();
const char* energy_units();
const char* power_units();

// Canonical, round-trippable text: picks the largest unit that keeps the mantissa >= 1.
std::string to_string(Frequency f);
std::string to_string(Bandwidth b);  // decimal prefixes (GB/s = 1e9 B/s)
std::string to_string(Bytes b);      // binary prefixes when exact, else bytes
std::string to_string(Duration d);
std::string to_string(Energy e);
std::string to_string(Power p);

// Shortest decimal text that parses back to the same double.
std::string format_number(double v);

}  // namespace trnsim
