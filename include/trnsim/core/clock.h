#pragma once
// Clock domains. Simulated time is kept in femtoseconds (SystemC resolution 1 fs); each engine counts
// cycles of its own clock, and an event in one domain is seen by another at that domain's next edge.

#include <cmath>
#include <cstdint>

namespace trnsim {

class ClockDomain {
public:
    ClockDomain() = default;
    explicit ClockDomain(double hz) : m_hz(hz), m_hz_int(0), m_period_fs(0) {
        // Integral frequencies (every preset's) use exact integer arithmetic; a period that is a whole
        // number of femtoseconds needs no division at all.
        // (A frequency parsed from "1.12GHz" may miss an integer by an ulp: it counts as that integer.)
        const double whole = std::round(hz);
        if (hz >= 1 && hz < 1e18 && std::abs(hz - whole) <= 1e-3) {
            m_hz_int = static_cast<std::uint64_t>(whole);
            if (kFsPerS % m_hz_int == 0) m_period_fs = kFsPerS / m_hz_int;
        }
    }

    double hz() const { return m_hz; }
    // Time of the rising edge that starts cycle `cycle` (cycle 0 at time 0), rounded up to a femtosecond.
    std::uint64_t edge_fs(std::int64_t cycle) const {
        if (cycle >= 0 && m_period_fs) return static_cast<std::uint64_t>(cycle) * m_period_fs;
        if (cycle >= 0 && m_hz_int) {
            const unsigned __int128 n = static_cast<unsigned __int128>(cycle) * kFsPerS;
            return static_cast<std::uint64_t>((n + m_hz_int - 1) / m_hz_int);
        }
        const long double t = static_cast<long double>(cycle) * 1e15L / static_cast<long double>(m_hz);
        auto fs = static_cast<std::uint64_t>(t);
        return static_cast<long double>(fs) < t ? fs + 1 : fs;
    }
    // First cycle whose edge is at or after `fs`.
    std::int64_t cycle_at_or_after(std::uint64_t fs) const {
        if (m_period_fs) return static_cast<std::int64_t>((fs + m_period_fs - 1) / m_period_fs);
        if (m_hz_int) {
            // ceil(c * 1e15 / hz) >= fs  <=>  c * 1e15 > (fs - 1) * hz.
            if (fs == 0) return 0;
            const unsigned __int128 n = static_cast<unsigned __int128>(fs - 1) * m_hz_int;
            return static_cast<std::int64_t>(n / kFsPerS) + 1;
        }
        auto c = static_cast<std::int64_t>(static_cast<long double>(fs) * static_cast<long double>(m_hz) / 1e15L);
        while (c > 0 && edge_fs(c - 1) >= fs) --c;
        while (edge_fs(c) < fs) ++c;
        return c;
    }

private:
    static constexpr std::uint64_t kFsPerS = 1000000000000000ULL;
    double m_hz = 1e9;
    std::uint64_t m_hz_int = 1000000000, m_period_fs = 1000000;
};

}  // namespace trnsim
