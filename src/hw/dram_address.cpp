#include "trnsim/hw/dram_address.h"

#include <stdexcept>
#include <string>

namespace trnsim::hw::dram {

namespace {

int log2_exact(std::uint64_t v) {
    if (v == 0 || (v & (v - 1)) != 0) return -1;
    int k = 0;
    while ((std::uint64_t{1} << k) != v) ++k;
    return k;
}

}  // namespace

AddressMap::AddressMap(const Organization& org, int stacks, MapScheme scheme)
    : m_org(org), m_stacks(stacks), m_scheme(scheme) {
    m_org.validate();
    if (stacks < 1) throw std::invalid_argument("dram address map: stacks must be >= 1");
    m_radix[channel] = static_cast<std::uint64_t>(org.channels);
    m_radix[pseudo_channel] = static_cast<std::uint64_t>(org.pseudo_channels);
    m_radix[stack] = static_cast<std::uint64_t>(stacks);
    m_radix[column] = static_cast<std::uint64_t>(org.columns);
    m_radix[sid] = static_cast<std::uint64_t>(org.sids);
    m_radix[bank_group] = static_cast<std::uint64_t>(org.bank_groups);
    m_radix[bank] = static_cast<std::uint64_t>(org.banks_per_group);
    m_radix[row] = static_cast<std::uint64_t>(org.rows);
    m_burst_shift = log2_exact(static_cast<std::uint64_t>(org.burst_bytes));
    int offset = 0;
    for (int f = 0; f < kFields; ++f) {
        m_shift[f] = log2_exact(m_radix[f]);
        if (m_shift[f] < 0) m_pow2 = false;
        m_offset[f] = offset;
        offset += m_shift[f];
        m_bursts *= m_radix[f];
    }
    m_plain_pow2 = m_pow2 && m_burst_shift >= 0 && scheme == MapScheme::ro_ba_bg_ra_co_ch;
}

Decoded AddressMap::decode_general(std::uint64_t address) const {
    const std::uint64_t burst =
        m_burst_shift >= 0 ? address >> m_burst_shift : address / static_cast<std::uint64_t>(m_org.burst_bytes);
    if (burst >= m_bursts)
        throw std::out_of_range("dram address map: address " + std::to_string(address) + " beyond capacity " +
                                std::to_string(capacity_bytes()) + " B");
    std::uint64_t v[kFields];
    std::uint64_t x = burst;
    if (m_pow2) {
        for (int f = 0; f < kFields; ++f) v[f] = (x >> m_offset[f]) & (m_radix[f] - 1);
    } else {
        for (int f = 0; f < kFields; ++f) {
            v[f] = x % m_radix[f];
            x /= m_radix[f];
        }
    }
    if (m_scheme == MapScheme::xor_hashed) permute(v, false);
    return Decoded{static_cast<int>(v[stack]), static_cast<int>(v[channel]),    static_cast<int>(v[pseudo_channel]),
                   static_cast<int>(v[sid]),   static_cast<int>(v[bank_group]), static_cast<int>(v[bank]),
                   static_cast<int>(v[row]),   static_cast<int>(v[column])};
}

// Row slices permute the channel (lowest row digits), then the bank group, then the bank: XOR for
// power-of-two fields, addition modulo the field size otherwise; `inverse` undoes it.
void AddressMap::permute(std::uint64_t (&v)[kFields], bool inverse) const {
    std::uint64_t r = v[row];
    for (const int f : {channel, bank_group, bank}) {
        const std::uint64_t n = m_radix[f];
        const std::uint64_t h = m_shift[f] >= 0 ? (r & (n - 1)) : r % n;
        r = m_shift[f] >= 0 ? r >> m_shift[f] : r / n;
        if (m_shift[f] >= 0)
            v[f] ^= h;
        else
            v[f] = inverse ? (v[f] + n - h) % n : (v[f] + h) % n;
    }
}

std::uint64_t AddressMap::encode(const Decoded& d) const {
    const int in[kFields] = {d.channel, d.pseudo_channel, d.stack, d.column, d.sid, d.bank_group, d.bank, d.row};
    std::uint64_t v[kFields];
    for (int f = 0; f < kFields; ++f) {
        if (in[f] < 0 || static_cast<std::uint64_t>(in[f]) >= m_radix[f])
            throw std::out_of_range("dram address map: encode of a field out of range");
        v[f] = static_cast<std::uint64_t>(in[f]);
    }
    if (m_scheme == MapScheme::xor_hashed) permute(v, true);
    std::uint64_t x = 0;
    for (int f = kFields - 1; f >= 0; --f) x = x * m_radix[f] + v[f];
    return x * static_cast<std::uint64_t>(m_org.burst_bytes);
}

}  // namespace trnsim::hw::dram
