"""Plausible bugs, each with the tests that must catch it (run by ``mutation_check.py``).

Each entry:
    id: short unique name.
    file: path from the repository root.
    old: an exact snippet of ``file`` that occurs exactly once (keep it short: the file may
        change around it).
    new: its replacement, the bug.
    tests: pytest node ids run on the mutated copy; the first failure "catches" the bug.
        List the fewest, fastest tests that catch it.
    description: the bug, and the claim the tests guard.
    timeout (optional): seconds before the run counts as survived (default 300).

Add an entry for every bug found, with the test that now catches it.
"""

THEORY = "tests/theory/test_clustering_theorems.py"
# Cases [beta-dynamics-d]: d = 8 runs the fused kernels, d = 12 the dense field.
EQUIANGULAR = THEORY + "::test_equiangular_start_stays_equiangular[{}]"

MUTATIONS = [
    # --- the field: wrong dynamics planted where the run builds it --------------------------
    dict(
        id="half_beta",
        file="particles/_simulate.py",
        old="beta=params.beta, usa=",
        new="beta=params.beta / 2, usa=",
        tests=[EQUIANGULAR.format("1.0-USA-8")],
        description="beta halved in the field: the clustering time scales and rho ODEs "
                    "(theory note 3) depend on beta",
    ),
    dict(
        id="usa_for_sa",
        file="particles/_simulate.py",
        old='usa=params.dynamics == "USA"',
        new="usa=True",
        tests=[EQUIANGULAR.format("1.0-SA-8")],
        description="SA runs as USA (Z_i = n): the SA and USA reductions differ at beta > 0",
    ),
    dict(
        id="sa_for_usa",
        file="particles/_simulate.py",
        old='usa=params.dynamics == "USA"',
        new="usa=False",
        tests=[f"{THEORY}::test_circle_usa_is_the_angle_ode"],
        description="USA runs as SA (softmax): USA on the circle is no longer the angle ODE",
    ),
    dict(
        id="sign_flip",
        file="particles/_simulate.py",
        old="V = eye if params.V is None else params.V",
        new="V = -eye if params.V is None else params.V",
        tests=[EQUIANGULAR.format("1.0-SA-8")],
        description="velocity sign flipped (tokens repel): clustering theorems fail",
    ),
    dict(
        id="logits_over_sqrt_d",
        file="particles/_simulate.py",
        old="beta=params.beta, usa=",
        new="beta=params.beta / np.sqrt(d), usa=",
        tests=[f"{THEORY}::test_high_dimension_limit[USA]"],
        description="logits scaled by 1/sqrt(d) as in a transformer layer: the theory has none",
    ),
    dict(
        id="transposed_v",
        file="particles/_simulate.py",
        old="V = eye if params.V is None else params.V",
        new="V = eye if params.V is None else np.swapaxes(params.V, -1, -2)",
        tests=["tests/particles/test_simulate.py::test_fixed_step_runs_match_numpy_reference"],
        description="V acts on row vectors (x V) instead of V x",
    ),
    dict(
        id="swapped_q_k",
        file="particles/_simulate.py",
        old="_matmul(np.swapaxes(Q, -1, -2), K)",
        new="_matmul(np.swapaxes(K, -1, -2), Q)",
        tests=["tests/particles/test_simulate.py::test_fixed_step_runs_match_numpy_reference"],
        description="logits <K x_i, Q x_j> instead of <Q x_i, K x_j> (A transposed)",
    ),
    # --- the kernels ---------------------------------------------------------------------------
    dict(
        id="no_projection_fused",
        file="particles/_kernels.py",
        old="            out[b, k, i] -= p * x[b, k, i]",
        new="            out[b, k, i] -= 0.0 * p * x[b, k, i]",
        tests=[EQUIANGULAR.format("1.0-SA-8")],
        description="projection P_x dropped in the fused kernels (RK4 then renormalises only)",
    ),
    dict(
        id="no_projection_dense",
        file="particles/_dense_field.py",
        old="ot.sub_((xt * ot).sum(dim=2, keepdim=True) * xt)",
        new="ot.sub_(0.0 * xt)",
        tests=[EQUIANGULAR.format("1.0-SA-12")],
        description="projection P_x dropped in the dense field (d > 8)",
    ),
    dict(
        id="self_term_dropped_fused",
        file="particles/_kernels.py",
        old="        row[j] = vexp(logit - c)",
        new="        row[j] = vexp(logit - c) if j != i else 0.0",
        tests=[f"{THEORY}::test_cone_collapse_is_exponential_for_any_QK"],
        description="the j = i term left out of the sums (fused kernels, d > 2)",
    ),
    dict(
        id="self_term_dropped_circle",
        file="particles/_kernels.py",
        old="        if s < s0:",
        new="        if s < max(s0, 1):",
        tests=[f"{THEORY}::test_small_beta_clusters_with_high_probability"],
        description="the j = i term left out of the sums (circle kernels, symmetric A)",
    ),
    dict(
        id="self_term_dropped_dense",
        file="particles/_kernels.py",
        old="            e = vexp(logits[b, i, j])",
        new="            e = vexp(logits[b, i, j]) if j != i else 0.0",
        tests=[EQUIANGULAR.format("0.0-SA-12")],
        description="the j = i term left out of the sums (dense field, d > 8)",
    ),
    dict(
        id="rk4_weights",
        file="particles/_kernels.py",
        old="(k1[b, k, i] + 2.0 * (k2[b, k, i] + k3[b, k, i]) + k4[b, k, i]) / 6.0",
        new="(k1[b, k, i] + 2.0 * (k2[b, k, i] + k3[b, k, i]) + k4[b, k, i]) / 6.5",
        tests=[f"{THEORY}::test_energy_rate_identity[SA]"],
        description="RK4 combination weights off (the step is no longer consistent)",
    ),
    # --- observables -------------------------------------------------------------------------
    dict(
        id="density_counts_self_pairs",
        file="particles/observables.py",
        old="return close / (n * (n - 1))",
        new="return close / (n * n)",
        tests=["tests/particles/test_observables.py::test_density_matches_numpy"],
        description="density over n^2 pairs instead of the n (n - 1) ordered pairs i != j "
                    "(the authors' phase-diagram colour)",
    ),
    dict(
        id="density_kernel_keeps_diagonal",
        file="particles/_observable_kernels.py",
        old="count -= row[u] > density_threshold",
        new="count -= 0",
        tests=["tests/particles/test_observables.py::test_density_matches_numpy"],
        description="the depth-first kernel counts the pairs (i, i) as close",
    ),
    dict(
        id="density_circle_half_offset_twice",
        file="particles/_observable_kernels.py",
        old="pairs += (1 + (2 * s != n)) * (g > density_threshold)",
        new="pairs += 2 * (g > density_threshold)",
        tests=["tests/particles/test_observables.py::test_density_matches_numpy"],
        description="circle kernel: the offset s = n / 2 (met from both ends) counted twice",
    ),
    dict(
        id="clusters_tol_as_threshold",
        file="particles/observables.py",
        old="return _pair_statistics(x, np.inf, 1.0 - tol)[2]",
        new="return _pair_statistics(x, np.inf, tol)[2]",
        tests=["tests/particles/test_observables.py::test_counts_on_exact_configurations"],
        description="cluster count links pairs with <x_i, x_j> > tol instead of > 1 - tol",
    ),
    dict(
        id="clusters_forward_links_only",
        file="particles/_observable_kernels.py",
        old="if label[j] < 0 and row[j] > link_threshold:",
        new="if label[j] < 0 and row[j] > link_threshold and j > u:",
        tests=["tests/particles/test_observables.py::test_clusters_match_scipy_single_linkage"],
        description="depth-first search follows links to later tokens only: chains break "
                    "(single linkage against scipy)",
    ),
    dict(
        id="clusters_circle_mask_rotation",
        file="particles/_observable_kernels.py",
        old="forward[i] = ((r << i) | (r >> (n - i))) & everyone",
        new="forward[i] = ((r << i) | (r >> (n - i - 1))) & everyone",
        tests=["tests/particles/test_observables.py::test_clusters_match_scipy_single_linkage"],
        description="circle kernel: wrapped-around links land on the wrong token",
    ),
    dict(
        id="energy_normalisation",
        file="particles/observables.py",
        old="return np.exp(beta * gram).sum(axis=(-2, -1)) / (2 * beta * n**2)",
        new="return np.exp(beta * gram).sum(axis=(-2, -1)) / (2 * beta * n)",
        tests=["tests/particles/test_observables.py::test_energy_formula_and_small_beta_limit"],
        description="E_beta divided by n instead of n^2",
    ),
    dict(
        id="normalized_energy_shift",
        file="particles/observables.py",
        old="np.exp(beta * (gram - 1.0))",
        new="np.exp(beta * gram - 1.0)",
        tests=["tests/particles/test_observables.py::"
               "test_normalized_energy_is_one_for_a_single_cluster"],
        description="2 beta e^-beta E_beta computed as e^(beta G - 1): not 1 for one cluster",
    ),
    dict(
        id="covariance_over_d",
        file="particles/observables.py",
        old="sigma = np.swapaxes(x, -1, -2) @ x / x.shape[-2]",
        new="sigma = np.swapaxes(x, -1, -2) @ x / x.shape[-1]",
        tests=["tests/particles/test_observables.py::test_span_dimension_and_covariance"],
        description="Sigma = X^T X / d instead of / n",
    ),
    dict(
        id="sphere_from_cube",
        file="particles/sphere.py",
        old="x = rng.standard_normal(shape)",
        new="x = rng.uniform(-1.0, 1.0, shape)",
        tests=["tests/particles/test_sphere.py::test_sample_sphere_is_uniform"],
        description="normalised uniform cube points: not uniform on the sphere",
    ),
    # --- energy derivatives (critical points) ------------------------------------------------
    dict(
        id="energy_gradient_not_tangent",
        file="particles/energy_derivatives.py",
        old="return (W @ x - (W * gram).sum(axis=1)[:, None] * x) / n**2",
        new="return (W @ x) / n**2",
        tests=["tests/particles/test_critical_points.py::"
               "test_gradient_and_hessian_match_autograd_through_normalisation"],
        description="Euclidean instead of Riemannian gradient (radial part kept)",
    ),
    dict(
        id="energy_hessian_curvature_sign",
        file="particles/energy_derivatives.py",
        old="- c[:, None, None] * proj",
        new="+ c[:, None, None] * proj",
        tests=["tests/particles/test_critical_points.py::"
               "test_gradient_and_hessian_match_autograd_through_normalisation"],
        description="the sphere's curvature term <x_i, grad_i E> P_i added, not subtracted",
    ),
    # --- Hessian closed forms (Ormaniec, Dangel & Singh, 2025) --------------------------------
    dict(
        id="softmax_jacobian_no_outer",
        file="hessian/closed_form/_quantities.py",
        old="J = torch.diag_embed(A) - A[:, :, None] * A[:, None, :]",
        new="J = torch.diag_embed(A)",
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="softmax Jacobian diag(a) without - a a^T: moments not centred",
    ),
    dict(
        id="third_moment_uncentred",
        file="hessian/closed_form/_quantities.py",
        old="D = X[None, :, :] - m[:, None, :]",
        new="D = X[None, :, :] + 0 * m[:, None, :]",
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="third moments M3 about 0 instead of the mean m_i (functional Hessian)",
    ),
    dict(
        id="default_beta_uses_d",
        file="hessian/closed_form/_quantities.py",
        old="beta = 1.0 / math.sqrt(W_Q.shape[1]) if beta is None else float(beta)",
        new="beta = 1.0 / math.sqrt(W_Q.shape[0]) if beta is None else float(beta)",
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="score scale 1/sqrt(d) instead of 1/sqrt(d_K)",
    ),
    dict(
        id="mse_gradient_factor",
        file="hessian/closed_form/_quantities.py",
        old="G = 2 * (F - Y) / (L * K)",
        new="G = (F - Y) / (L * K)",
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="MSE output gradient without its factor 2 (functional Hessian halved)",
    ),
    dict(
        id="cross_entropy_hessian_diagonal",
        file="hessian/closed_form/_quantities.py",
        old="Lam = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / L",
        new="Lam = torch.diag_embed(p) / L",
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="cross-entropy output Hessian diag(p) without - p p^T",
    ),
    dict(
        id="t_functional_term_dropped",
        file="hessian/closed_form/attention.py",
        old="+ beta * _flat(t_functional)",
        new="+ 0 * beta * _flat(t_functional)",
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="H_f(Q, K) without the T-functional term (the outer/functional split)",
    ),
    dict(
        id="outer_qq_beta_power",
        file="hessian/closed_form/attention.py",
        old='("W_Q", "W_Q"): beta**2 * _flat(torch.einsum("ia,ib,icd,de->acbe", qt.X, qt.X, KC',
        new='("W_Q", "W_Q"): beta * _flat(torch.einsum("ia,ib,icd,de->acbe", qt.X, qt.X, KC',
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="H_o(Q, Q) scaled by beta instead of beta^2",
    ),
    dict(
        id="outer_vv_inputs_not_moments",
        file="hessian/closed_form/attention.py",
        old='_flat(torch.einsum("ia,ib,ifg->afbg", qt.m, qt.m, qt.Lam))',
        new='_flat(torch.einsum("ia,ib,ifg->afbg", qt.X, qt.X, qt.Lam))',
        tests=["tests/hessian/test_closed_form_attention.py::test_blocks_equal_autograd"],
        description="H_o(V, V) from the inputs x_i instead of the attention means m_i = (A X)_i",
    ),
    # --- Hessian-vector products ---------------------------------------------------------------
    dict(
        id="ggn_without_loss_hessian",
        file="hessian/products.py",
        old="return pullback(jvp(loss_grad, (out,), (Jv,))[1])[0]",
        new="return pullback(Jv)[0]",
        tests=["tests/hessian/test_products.py::test_products_match_dense"],
        description="GGN product J^T J v: the loss Hessian left out",
    ),
    dict(
        id="functional_product_sign",
        file="hessian/products.py",
        old="return lambda V: h(V) - g(V)",
        new="return lambda V: h(V) + g(V)",
        tests=["tests/hessian/test_products.py::test_products_match_dense"],
        description="functional Hessian product H v + G v instead of H v - G v",
    ),
]
