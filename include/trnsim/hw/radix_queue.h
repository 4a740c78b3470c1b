#pragma once
// A radix heap (Ahuja, Mehlhorn, Orlin and Tarjan 1990) of entries with a due time and a unique request
// order, for queues whose entries are never due before the last one taken (simulated time only moves
// forward): an entry sits in the bucket of the highest bit in which its due time differs from that last
// time (bucket 0: equal), appended unsorted; taking the earliest empties the lowest non-empty bucket into
// lower ones. Entries due at the same time leave in request order (bucket 0 is kept in that order), so
// the order does not depend on how entries are stored.

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <vector>

namespace trnsim::hw {

// T has `std::uint64_t due, seq` (seq: unique, increasing with each push).
template <class T>
class RadixQueue {
public:
    static constexpr std::uint64_t kNone = ~std::uint64_t{0};

    RadixQueue() { std::fill(std::begin(m_least), std::end(m_least), kNone); }

    // `e.due` must not be before the last entry taken.
    void push(const T& e) {
        if (e.due < m_last) throw std::logic_error("radix queue: an entry due before the last one taken");
        put(e);
    }
    // The earliest entry, taken out, if it is due by `now`. The last time advances only to a due time not
    // after `now`, so entries pushed from then on (due at `now` or later) are never before it.
    bool take(std::uint64_t now, T& out) {
        std::vector<T>& b0 = m_buckets[0];
        if (m_head0 == b0.size()) {
            b0.clear();
            m_head0 = 0;
            if (m_nonempty == 0) return false;
            const int b = __builtin_ctzll(m_nonempty) + 1;
            std::vector<T>& from = m_buckets[b];
            const std::uint64_t least = m_least[b];
            if (least > now) return false;
            m_last = least;
            m_least[b] = kNone;
            m_nonempty &= ~(std::uint64_t{1} << (b - 1));
            for (const T& e : from) put(e);  // each to a lower bucket
            from.clear();
            // Those due at the new last time, in request order (everything pushed later goes behind them).
            if (b0.size() > 1) std::sort(b0.begin(), b0.end(), [](const T& x, const T& y) { return x.seq < y.seq; });
        }
        out = b0[m_head0++];
        return true;
    }
    // The earliest due time (kNone when empty), taking nothing.
    std::uint64_t earliest() const {
        if (m_head0 < m_buckets[0].size()) return m_last;
        if (m_nonempty == 0) return kNone;
        return m_least[__builtin_ctzll(m_nonempty) + 1];
    }
    bool empty() const { return m_head0 == m_buckets[0].size() && m_nonempty == 0; }

private:
    void put(const T& e) {
        const int b = e.due == m_last ? 0 : 64 - __builtin_clzll(e.due ^ m_last);
        m_buckets[b].push_back(e);
        if (b > 0) {
            m_nonempty |= std::uint64_t{1} << (b - 1);
            m_least[b] = std::min(m_least[b], e.due);
        }
    }

    std::vector<T> m_buckets[65];
    std::uint64_t m_least[65];     // bucket b (1..64): the earliest due time among its entries, kNone when empty
    std::size_t m_head0 = 0;       // bucket 0's entries before it are taken
    std::uint64_t m_nonempty = 0;  // bit b - 1: bucket b (1..64) holds entries
    std::uint64_t m_last = 0;
};

}  // namespace trnsim::hw
