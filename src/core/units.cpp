#include "trnsim/core/units.h"

#include <fmt/format.h>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "trnsim/core/error.h"

namespace trnsim {
namespace {

struct UnitScale {
    std::string_view suffix;
    double scale;
};

// Longest suffixes first so that "GiB/s" is not read as "B/s".
constexpr std::array<UnitScale, 4> k_frequency = {{{"GHz", 1e9}, {"MHz", 1e6}, {"kHz", 1e3}, {"Hz", 1.0}}};

constexpr double k_ki = 1024.0;
constexpr double k_mi = k_ki * 1024.0;
constexpr double k_gi = k_mi * 1024.0;
constexpr double k_ti = k_gi * 1024.0;

constexpr std::array<UnitScale, 19> k_bandwidth = {{
    {"TiB/s", k_ti},    {"GiB/s", k_gi},   {"MiB/s", k_mi},   {"KiB/s", k_ki},    {"TB/s", 1e12},
    {"GB/s", 1e9},      {"MB/s", 1e6},     {"kB/s", 1e3},     {"KB/s", 1e3},      {"B/s", 1.0},
    {"Tbps", 1e12 / 8}, {"Gbps", 1e9 / 8}, {"Mbps", 1e6 / 8}, {"Tb/s", 1e12 / 8}, {"Gb/s", 1e9 / 8},
    {"Mb/s", 1e6 / 8},  {"kb/s", 1e3 / 8}, {"b/s", 1.0 / 8},  {"bps", 1.0 / 8},
}};

constexpr std::array<UnitScale, 10> k_bytes = {{{"TiB", k_ti},
                                                {"GiB", k_gi},
                                                {"MiB", k_mi},
                                                {"KiB", k_ki},
                                                {"TB", 1e12},
                                                {"GB", 1e9},
                                                {"MB", 1e6},
                                                {"kB", 1e3},
                                                {"KB", 1e3},
                                                {"B", 1.0}}};

constexpr std::array<UnitScale, 7> k_duration = {
    {{"ms", 1e-3}, {"us", 1e-6}, {"\xC2\xB5s", 1e-6}, {"ns", 1e-9}, {"ps", 1e-12}, {"fs", 1e-15}, {"s", 1.0}}};

template <std::size_t N>
double parse_with(std::string_view text, const std::array<UnitScale, N>& units, const char* what, const char* allowed) {
    std::string_view t = text;
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    double value = 0;
    const char* begin = t.data();
    const char* end = t.data() + t.size();
    auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec != std::errc() || ptr == begin) {
        throw UnitError(fmt::format("'{}' is not a {}: expected <number><unit>, units {}", text, what, allowed));
    }
    if (!std::isfinite(value)) {
        throw UnitError(fmt::format("'{}' is not a {}: the number must be finite; expected <number><unit>, units {}",
                                    text, what, allowed));
    }
    std::string_view suffix(ptr, static_cast<std::size_t>(end - ptr));
    while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
    if (suffix.empty()) {
        throw UnitError(fmt::format("'{}' has no unit: a {} needs one of {}", text, what, allowed));
    }
    for (const auto& u : units) {
        if (suffix == u.suffix) return value * u.scale;
    }
    throw UnitError(fmt::format("'{}': unknown {} unit '{}', allowed {}", text, what, suffix, allowed));
}

template <std::size_t N>
std::string format_with(double v, const std::array<UnitScale, N>& units, std::string_view fallback) {
    for (const auto& u : units) {
        if (u.scale > 1.0 && std::fabs(v) >= u.scale) return format_number(v / u.scale) + std::string(u.suffix);
    }
    return format_number(v) + std::string(fallback);
}

constexpr std::array<UnitScale, 6> k_energy = {
    {{"mJ", 1e-3}, {"uJ", 1e-6}, {"nJ", 1e-9}, {"pJ", 1e-12}, {"fJ", 1e-15}, {"J", 1.0}}};
constexpr std::array<UnitScale, 4> k_power = {{{"kW", 1e3}, {"mW", 1e-3}, {"uW", 1e-6}, {"W", 1.0}}};

}  // namespace

const char* energy_units() {
    return "J, mJ, uJ, nJ, pJ, fJ";
}
const char* power_units() {
    return "W, kW, mW, uW";
}

Energy parse_energy(std::string_view text) {
    return {parse_with(text, k_energy, "energy", energy_units())};
}
Power parse_power(std::string_view text) {
    return {parse_with(text, k_power, "power", power_units())};
}

std::string to_string(Energy e) {
    static constexpr std::array<UnitScale, 5> units = {
        {{"J", 1.0}, {"mJ", 1e-3}, {"uJ", 1e-6}, {"nJ", 1e-9}, {"pJ", 1e-12}}};
    if (e.joules == 0) return "0J";
    for (const auto& u : units)
        if (std::fabs(e.joules) >= u.scale) return format_number(e.joules / u.scale) + std::string(u.suffix);
    return format_number(e.joules / 1e-15) + "fJ";
}

std::string to_string(Power p) {
    static constexpr std::array<UnitScale, 4> units = {{{"kW", 1e3}, {"W", 1.0}, {"mW", 1e-3}, {"uW", 1e-6}}};
    if (p.watts == 0) return "0W";
    for (const auto& u : units)
        if (std::fabs(p.watts) >= u.scale) return format_number(p.watts / u.scale) + std::string(u.suffix);
    return format_number(p.watts) + "W";
}

const char* frequency_units() {
    return "Hz, kHz, MHz, GHz";
}
const char* bandwidth_units() {
    return "B/s, KB/s, MB/s, GB/s, TB/s (1e3 steps), KiB/s, MiB/s, GiB/s, TiB/s (2^10 steps), "
           "b/s, Mb/s, Gb/s, Tb/s, Gbps (bits)";
}
const char* bytes_units() {
    return "B, KB, MB, GB, TB (1e3 steps), KiB, MiB, GiB, TiB (2^10 steps)";
}
const char* duration_units() {
    return "s, ms, us, ns, ps, fs";
}

Frequency parse_frequency(std::string_view text) {
    return {parse_with(text, k_frequency, "frequency", frequency_units())};
}

Bandwidth parse_bandwidth(std::string_view text) {
    return {parse_with(text, k_bandwidth, "bandwidth", bandwidth_units())};
}

Bytes parse_bytes(std::string_view text) {
    double v = parse_with(text, k_bytes, "size", bytes_units());
    if (v >= 0x1p64) throw UnitError(fmt::format("'{}' is too large: a size is at most 2^64 - 1 B (16 EiB)", text));
    if (v < 0 || v != std::floor(v)) {
        throw UnitError(fmt::format("'{}' is not a whole, non-negative number of bytes", text));
    }
    return {static_cast<std::uint64_t>(v)};
}

Duration parse_duration(std::string_view text) {
    return {parse_with(text, k_duration, "duration", duration_units())};
}

std::string format_number(double v) {
    // Shortest text that reads back as the same double; 12 significant digits hide binary noise
    // (11.337411270000002 -> 11.33741127) when that still reads back within 1e-12 relative.
    const std::string short_form = fmt::format("{:.12g}", v);
    const double back = std::strtod(short_form.c_str(), nullptr);
    if (back == v || std::fabs(back - v) <= 1e-12 * std::fabs(v)) return short_form;
    return fmt::format("{}", v);
}

std::string to_string(Frequency f) {
    static constexpr std::array<UnitScale, 3> units = {{{"GHz", 1e9}, {"MHz", 1e6}, {"kHz", 1e3}}};
    return format_with(f.hz, units, "Hz");
}

std::string to_string(Bandwidth b) {
    static constexpr std::array<UnitScale, 4> units = {{{"TB/s", 1e12}, {"GB/s", 1e9}, {"MB/s", 1e6}, {"KB/s", 1e3}}};
    return format_with(b.bytes_per_s, units, "B/s");
}

std::string to_string(Bytes b) {
    static constexpr std::array<UnitScale, 4> units = {{{"TiB", k_ti}, {"GiB", k_gi}, {"MiB", k_mi}, {"KiB", k_ki}}};
    const auto v = static_cast<double>(b.count);
    for (const auto& u : units) {
        // In a unit only when exact with at most three decimals (1.5MiB, 224KiB), else in bytes.
        if (v >= u.scale && std::fmod(v * 1000.0, u.scale) == 0.0)
            return format_number(v / u.scale) + std::string(u.suffix);
    }
    return fmt::format("{}B", b.count);
}

std::string to_string(Duration d) {
    static constexpr std::array<UnitScale, 6> units = {
        {{"s", 1.0}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}, {"ps", 1e-12}, {"fs", 1e-15}}};
    const double v = d.seconds;
    if (v == 0) return "0s";
    for (const auto& u : units) {
        if (std::fabs(v) >= u.scale) return format_number(v / u.scale) + std::string(u.suffix);
    }
    return format_number(v) + "s";
}

}  // namespace trnsim
