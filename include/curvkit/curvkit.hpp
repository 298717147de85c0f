// Umbrella header: everything public except the optional Kokkos interop header.
#pragma once

#include "curvkit/core/context.hpp"
#include "curvkit/core/info.hpp"
#include "curvkit/core/memory.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/tensor.hpp"
#include "curvkit/core/types.hpp"
#include "curvkit/core/view.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/khatri_rao.hpp"
#include "curvkit/kron.hpp"
#include "curvkit/newton_schulz.hpp"
#include "curvkit/quasi_newton.hpp"
#include "curvkit/sherman_morrison.hpp"
#include "curvkit/spd.hpp"
#include "curvkit/version.hpp"
