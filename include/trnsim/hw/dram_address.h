#pragma once
// Physical address -> (stack, channel, pseudo-channel, SID, bank group, bank, row, column) of an HBM system.
// Mixed-radix decoding of the burst index (address / burst_bytes), fields from least to most significant:
// - ro_ba_bg_ra_co_ch: channel, pseudo-channel, stack, column, SID ("rank"), bank group, bank, row. Consecutive
//   bursts go to consecutive channels first, then pseudo-channels, then stacks; the columns of one row of a
//   pseudo-channel are channels * pseudo_channels * stacks bursts apart.
// - xor_hashed: the same order, then the channel, bank-group and bank fields are permuted by the low row
//   bits (permutation-based interleaving, Zhang, Zhu and Zhang, MICRO 2000): field XOR row slice for
//   power-of-two field sizes, (field + row slice) mod size otherwise, so decode stays a bijection. Successive
//   rows of one bank land in different banks/channels, spreading row conflicts of strided traffic.
// Any field size works (not only powers of two); power-of-two sizes decode with shifts.

#include <cstdint>

#include "trnsim/hw/dram_timing.h"

namespace trnsim::hw::dram {

struct Decoded {
    int stack, channel, pseudo_channel, sid, bank_group, bank, row, column;
};

enum class MapScheme { ro_ba_bg_ra_co_ch, xor_hashed };

class AddressMap {
public:
    // Throws std::invalid_argument for stacks < 1 or an invalid organization.
    AddressMap(const Organization& org, int stacks, MapScheme scheme);

    // `address`: any byte of a burst (the offset within the burst is ignored). Throws std::out_of_range at
    // or beyond capacity_bytes().
    Decoded decode(std::uint64_t address) const {
        // The common case, every field a power of two without hashing, inline: a memory decodes each burst.
        if (m_plain_pow2) {
            const std::uint64_t x = address >> m_burst_shift;
            if (x < m_bursts) {
                const auto field = [&](Field f) { return static_cast<int>((x >> m_offset[f]) & (m_radix[f] - 1)); };
                return Decoded{field(stack), field(channel), field(pseudo_channel), field(sid), field(bank_group),
                               field(bank),  field(row),     field(column)};
            }
        }
        return decode_general(address);
    }
    // Inverse of decode: the first byte of the burst. Throws std::out_of_range for a field out of range.
    std::uint64_t encode(const Decoded& d) const;
    std::uint64_t capacity_bytes() const { return m_bursts * static_cast<std::uint64_t>(m_org.burst_bytes); }
    MapScheme scheme() const { return m_scheme; }

private:
    enum Field { channel, pseudo_channel, stack, column, sid, bank_group, bank, row, kFields };
    void permute(std::uint64_t (&v)[kFields], bool inverse) const;  // the xor_hashed scheme
    Decoded decode_general(std::uint64_t address) const;
    Organization m_org;
    int m_stacks;
    MapScheme m_scheme;
    std::uint64_t m_radix[kFields];
    int m_shift[kFields];   // log2(radix) when the radix is a power of two, else -1
    int m_offset[kFields];  // bit offset of the field in the burst index (all radices powers of two)
    bool m_pow2 = true;
    bool m_plain_pow2 = false;  // every field and the burst a power of two, no hashing: decode by shifts
    int m_burst_shift = -1;     // log2(burst_bytes) when a power of two
    std::uint64_t m_bursts = 1;
};

}  // namespace trnsim::hw::dram
