// make_optimizer (curvkit/optim/registry.hpp): the paper presets of each optimizer.
#include "curvkit/optim/registry.hpp"

#include "curvkit/optim/kbfgs.hpp"
#include "curvkit/optim/kfac.hpp"
#include "curvkit/optim/mbag.hpp"
#include "curvkit/optim/mbf.hpp"
#include "curvkit/optim/muon.hpp"
#include "curvkit/optim/shampoo.hpp"
#include "curvkit/optim/smw_ng.hpp"
#include "curvkit/optim/tengrad.hpp"
#include "curvkit/optim/tnt.hpp"

namespace curvkit::optim {

std::vector<std::string> optimizer_names() {
  return {"sgd",   "adamw",    "kfac",   "kfac-ef",   "shampoo", "tnt",      "tnt-ef",
          "mbf",   "mbf-true", "mbag",   "mbag-n",    "muon",    "tengrad",  "kfac-2l",
          "kbfgs", "kbfgs-l",  "smw-ng", "smw-ng-bd", "smw-gn",  "smw-gn-bd"};
}

template <class T>
std::unique_ptr<Optimizer<T>> make_optimizer(std::string_view name, std::string_view preset,
                                             double lr) {
  const bool cnn = preset == "cnn";
  if (!cnn && preset != "autoencoder") return nullptr;
  std::unique_ptr<Optimizer<T>> o;
  if (name == "sgd") {
    SgdOptions s;
    if (cnn) s = {0.03, 0.9, 0.01};
    o = make_sgd<T>(s);
  } else if (name == "adamw") {
    AdamWOptions a;
    if (cnn) a = {3e-3, 0.9, 0.999, 1e-8, 0.1};
    o = make_adamw<T>(a);
  } else if (name == "kfac" || name == "kfac-ef" || name == "kfac-2l") {
    KfacOptions k = cnn ? KfacOptions::cnn() : KfacOptions::autoencoder();
    k.empirical = name == "kfac-ef";
    k.two_level = name == "kfac-2l";
    o = make_kfac<T>(k);
  } else if (name == "shampoo") {
    o = make_shampoo<T>(cnn ? ShampooOptions::cnn() : ShampooOptions{});
  } else if (name == "tnt" || name == "tnt-ef") {
    TntOptions t = cnn ? TntOptions::cnn() : TntOptions{};
    t.empirical = name == "tnt-ef";
    o = make_tnt<T>(t);
  } else if (name == "mbf" || name == "mbf-true") {
    MbfOptions m = cnn ? MbfOptions::cnn() : MbfOptions{};
    m.sampled_labels = name == "mbf-true";
    o = make_mbf<T>(m);
  } else if (name == "mbag" || name == "mbag-n") {
    MbagOptions m = cnn ? MbagOptions::cnn() : MbagOptions{};
    m.no_root = name == "mbag-n";
    o = make_mbag<T>(m);
  } else if (name == "muon") {
    o = make_muon<T>();
  } else if (name == "kbfgs") {
    o = make_kbfgs<T>(cnn ? KbfgsOptions::cnn() : KbfgsOptions::autoencoder());
  } else if (name == "kbfgs-l") {
    o = make_kbfgs<T>(cnn ? KbfgsOptions::cnn_limited() : KbfgsOptions::autoencoder_limited());
  } else if (name == "smw-ng" || name == "smw-ng-bd" || name == "smw-gn" || name == "smw-gn-bd") {
    SmwNgOptions s = cnn ? SmwNgOptions::cnn() : SmwNgOptions::autoencoder();
    s.block_diagonal = name == "smw-ng-bd" || name == "smw-gn-bd";
    s.gauss_newton = name == "smw-gn" || name == "smw-gn-bd";
    o = make_smw_ng<T>(s);
  } else if (name == "tengrad") {
    o = make_tengrad<T>(cnn ? TengradOptions::cnn() : TengradOptions::autoencoder());
  }
  if (o && lr > 0) o->set_learning_rate(lr);
  return o;
}

template std::unique_ptr<Optimizer<float>> make_optimizer<float>(std::string_view, std::string_view,
                                                                 double);
template std::unique_ptr<Optimizer<double>> make_optimizer<double>(std::string_view,
                                                                   std::string_view, double);

}  // namespace curvkit::optim
