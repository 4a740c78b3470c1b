#pragma once
// Small helpers the lowerings share to write instructions (internal to src/lowering).

#include "trnsim/hw/isa.h"

namespace trnsim::lowering {

inline hw::Instruction make(hw::Op op, hw::TileRef dst, hw::TileRef src0 = {}, hw::TileRef src1 = {}) {
    hw::Instruction i;
    i.op = op;
    i.dst = dst;
    i.src0 = src0;
    i.src1 = src1;
    return i;
}

// A scalar operand taken per row from column 0 of `t`.
inline hw::Scalar per_row(hw::TileRef t) {
    hw::Scalar s;
    s.per_row = true;
    s.tile = t;
    return s;
}

inline hw::Scalar constant(float v) {
    hw::Scalar s;
    s.value = v;
    return s;
}

}  // namespace trnsim::lowering
