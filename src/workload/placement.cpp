#include "trnsim/workload/placement.h"

#include <algorithm>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::workload {

namespace {
const char* const k_dim_names[3] = {"tp", "pp", "dp"};
}

Placement::Placement(int tp, int pp, int dp, const std::string& order) : m_tp(tp), m_pp(pp), m_dp(dp) {
    if (tp < 1 || pp < 1 || dp < 1) {
        throw UserError(fmt::format("placement: tp {}, pp {}, dp {}: each must be >= 1", tp, pp, dp));
    }
    std::string text = order;
    if (text.rfind("order=", 0) == 0) text = text.substr(6);
    const auto bad = [&] {
        throw UserError(fmt::format(
            "placement order '{}': allowed: a permutation of tp,pp,dp, innermost first (e.g. order=tp,dp,pp)", order));
    };
    std::vector<int> dims;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t comma = text.find(',', pos);
        const std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        int id = -1;
        for (int i = 0; i < 3; ++i) {
            if (item == k_dim_names[i]) id = i;
        }
        if (id < 0 || std::find(dims.begin(), dims.end(), id) != dims.end()) bad();
        dims.push_back(id);
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (dims.size() != 3) bad();
    const int sizes[3] = {tp, pp, dp};
    int stride = 1;
    for (int i = 0; i < 3; ++i) {
        m_order[i] = dims[i];
        m_stride[dims[i]] = stride;
        stride *= sizes[dims[i]];
    }
}

std::string Placement::order() const {
    return fmt::format("{},{},{}", k_dim_names[m_order[0]], k_dim_names[m_order[1]], k_dim_names[m_order[2]]);
}

int Placement::rank(const RankCoord& c) const {
    if (c.tp < 0 || c.tp >= m_tp || c.pp < 0 || c.pp >= m_pp || c.dp < 0 || c.dp >= m_dp) {
        throw UserError(fmt::format("placement: coordinate (dp {}, pp {}, tp {}) outside (dp {}, pp {}, tp {})", c.dp,
                                    c.pp, c.tp, m_dp, m_pp, m_tp));
    }
    return c.tp * m_stride[0] + c.pp * m_stride[1] + c.dp * m_stride[2];
}

RankCoord Placement::coord(int r) const {
    if (r < 0 || r >= ranks()) throw UserError(fmt::format("placement: rank {} outside 0..{}", r, ranks() - 1));
    RankCoord c;
    c.tp = (r / m_stride[0]) % m_tp;
    c.pp = (r / m_stride[1]) % m_pp;
    c.dp = (r / m_stride[2]) % m_dp;
    return c;
}

std::vector<int> Placement::group_of(CommGroup g, int r) const {
    const RankCoord c = coord(r);
    std::vector<int> out;
    switch (g) {
        case CommGroup::tp:
            for (int i = 0; i < m_tp; ++i) out.push_back(rank({c.dp, c.pp, i}));
            break;
        case CommGroup::pp:
            for (int i = 0; i < m_pp; ++i) out.push_back(rank({c.dp, i, c.tp}));
            break;
        case CommGroup::dp:
            for (int i = 0; i < m_dp; ++i) out.push_back(rank({i, c.pp, c.tp}));
            break;
        case CommGroup::embedding:
            out.push_back(rank({c.dp, 0, c.tp}));
            if (m_pp > 1) out.push_back(rank({c.dp, m_pp - 1, c.tp}));
            break;
        case CommGroup::world:
            for (int i = 0; i < ranks(); ++i) out.push_back(i);
            break;
    }
    return out;
}

std::vector<std::vector<int>> Placement::groups(CommGroup g) const {
    std::vector<std::vector<int>> out;
    std::vector<bool> seen(ranks(), false);
    for (int r = 0; r < ranks(); ++r) {
        if (seen[r]) continue;
        if (g == CommGroup::embedding) {
            const int stage = coord(r).pp;
            if (stage != 0 && stage != m_pp - 1) continue;
        }
        auto grp = group_of(g, r);
        for (int x : grp) seen[x] = true;
        out.push_back(std::move(grp));
    }
    return out;
}

std::vector<SymmetryClass> symmetry_classes(const Placement& p) {
    std::vector<SymmetryClass> out(p.pp());
    for (int s = 0; s < p.pp(); ++s) {
        out[s].stage = s;
        out[s].representative = p.rank({0, s, 0});
    }
    for (int r = 0; r < p.ranks(); ++r) out[p.coord(r).pp].ranks.push_back(r);
    return out;
}

}  // namespace trnsim::workload
