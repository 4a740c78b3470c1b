#pragma once
// Clock domains. Simulated time is kept in femtoseconds (SystemC resolution 1 fs); each engine counts
// cycles of its own clock, and an event in one domain is seen by another at that domain's next edge.

#include <cstdint>

namespace trnsim {

class ClockDomain {
public:
    ClockDomain() = default;
    explicit ClockDomain(double hz) : m_hz(hz) {}

    double hz() const { return m_hz; }
    // Time of the rising edge that starts cycle `cycle` (cycle 0 at time 0), rounded up to a femtosecond.
    std::uint64_t edge_fs(std::int64_t cycle) const {
        const long double t = static_cast<long double>(cycle) * 1e15L / static_cast<long double>(m_hz);
        auto fs = static_cast<std::uint64_t>(t);
        return static_cast<long double>(fs) < t ? fs + 1 : fs;
    }
    // First cycle whose edge is at or after `fs`.
    std::int64_t cycle_at_or_after(std::uint64_t fs) const {
        auto c = static_cast<std::int64_t>(static_cast<long double>(fs) * static_cast<long double>(m_hz) / 1e15L);
        while (c > 0 && edge_fs(c - 1) >= fs) --c;
        while (edge_fs(c) < fs) ++c;
        return c;
    }

private:
    double m_hz = 1e9;
};

}  // namespace trnsim
