function [sy, sx, pt, pb, pl, pr, H_prime, W_prime] = pool_windows(func, H, W, HH, WW, S, P)
%POOL_WINDOWS The seed's pooling windows (im2col_ref with isConv = 0).
%   [SY, SX, PT, PB, PL, PR, H', W'] = POOL_WINDOWS(FUNC, H, W, HH, WW, S, P)
%   normalises the options (S = [] is the window size, the default stride),
%   computes H' = ceil((H+PT+PB-HH)/SY) + 1 (and W' across) and warns through
%   check_output_size when that is not an integer.  Shared by max_pool_ref,
%   avg_pool_ref and their backward passes.
  if isempty(S)
    S = [HH WW];
  end
  [sy, sx, pt, pb, pl, pr] = conv_options(S, P);
  H_prime = ceil((H + pt + pb - HH) / sy) + 1;
  W_prime = ceil((W + pl + pr - WW) / sx) + 1;
  if H_prime < 1 || W_prime < 1
    error('%s: a %dx%d window does not fit the %dx%d padded input', func, HH, WW, ...
          H + pt + pb, W + pl + pr);
  end
  check_output_size(func, H, W, HH, WW, sy, sx, pt, pb, pl, pr, 0, H_prime, W_prime);
end
