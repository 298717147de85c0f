// Every optimizer of the layer by name, with the paper settings of a network kind, so that a
// trainer switches with one flag.  Names (optimizer_names()): sgd, adamw, kfac, kfac-ef,
// shampoo, tnt, tnt-ef, mbf, mbf-true, mbag, mbag-n, muon, tengrad, kfac-2l, kbfgs.
// Presets: "autoencoder" (the seeds' MLP settings: statistics every step, refreshes every 20)
// and "cnn" (every 10 / 100).  The learning rate can be overridden (lr > 0).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

/// The optimizer called `name` with `preset`'s settings, or null for an unknown name or preset.
template <class T>
std::unique_ptr<Optimizer<T>> make_optimizer(std::string_view name,
                                             std::string_view preset = "autoencoder",
                                             double lr = 0);

/// The names make_optimizer knows.
std::vector<std::string> optimizer_names();

}  // namespace curvkit::optim
