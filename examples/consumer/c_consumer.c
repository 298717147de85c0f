/* A C program on the installed curvkit (include/curvkit/c_api.h): solves a batch of SPD
 * systems with posv on every host backend the build has and checks the residual. */
#include <math.h>
#include <stdio.h>

#include "curvkit/c_api.h"

int main(void) {
  enum { batch = 2, n = 3 };
  if (curvkit_c_api_version() != CURVKIT_C_API_VERSION) {
    fprintf(stderr, "curvkit library and header differ\n");
    return 1;
  }
  curvkit_initialize();
  const curvkit_backend backends[2] = {CURVKIT_BACKEND_REFERENCE, CURVKIT_BACKEND_KOKKOS};
  int failures = 0;
  for (int k = 0; k < 2; ++k) {
    if (!curvkit_backend_host_memory(backends[k])) continue; /* not built, or on a GPU */
    curvkit_context ctx = NULL;
    if (curvkit_context_create(backends[k], NULL, &ctx) != CURVKIT_OK) {
      fprintf(stderr, "%s\n", curvkit_last_error());
      return 1;
    }
    /* A_b = [[4,1,0],[1,3,1],[0,1,2]] + b I, rhs B_b = (1, 2, 3) */
    double a[batch][n][n], b[batch][n], a0[batch][n][n], b0[batch][n];
    for (int m = 0; m < batch; ++m)
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j)
          a[m][i][j] = (i == j ? 4.0 - i + m : 0.0) + (i - j == 1 || j - i == 1 ? 1.0 : 0.0);
        b[m][i] = i + 1.0;
      }
    for (int m = 0; m < batch; ++m)
      for (int i = 0; i < n; ++i) {
        b0[m][i] = b[m][i];
        for (int j = 0; j < n; ++j) a0[m][i][j] = a[m][i][j];
      }
    curvkit_matrices av = curvkit_make_matrices(a, CURVKIT_FLOAT64, batch, n, n);
    curvkit_matrices bv = curvkit_make_matrices(b, CURVKIT_FLOAT64, batch, n, 1);
    int32_t info[batch];
    if (curvkit_posv(ctx, 1, &av, &bv, info, NULL, NULL) != CURVKIT_OK ||
        curvkit_synchronize(ctx) != CURVKIT_OK) {
      fprintf(stderr, "posv: %s\n", curvkit_last_error());
      return 1;
    }
    double residual = 0;
    for (int m = 0; m < batch; ++m)
      for (int i = 0; i < n; ++i) {
        double r = -b0[m][i];
        for (int j = 0; j < n; ++j) r += a0[m][i][j] * b[m][j];
        residual = fmax(residual, fabs(r));
      }
    printf("C consumer, curvkit %s, backend %d: info %d %d, residual %.2e\n", curvkit_version(),
           (int)backends[k], info[0], info[1], residual);
    failures += info[0] != 0 || info[1] != 0 || residual > 1e-12;
    curvkit_context_destroy(ctx);
  }
  curvkit_finalize();
  return failures == 0 ? 0 : 1;
}
