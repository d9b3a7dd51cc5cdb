function out = avg_pool_ref(input, HH, WW, S, P)
%AVG_POOL_REF Average pooling the seed's way: the column means of im2col_ref(..., 0).
%   OUT = AVG_POOL_REF(INPUT, HH, WW, S, P) with INPUT of size H x W x C x N
%   returns the H' x W' x C x N means of max_pool_ref's windows: every window
%   sum divided by HH*WW, whatever part of it is padding or overhang (zeros).
%   S defaults to [HH WW]; P to 0.  Warns 'convcore:outputSize' as
%   max_pool_ref.
%
%   See DEVIATIONS.md.  convcore.matlab.avg_pool is the Python side.
  if nargin < 5
    P = 0;
  end
  if nargin < 4
    S = [];
  end
  [H, W, C, N] = size(input);
  [sy, sx, pt, pb, pl, pr, H_prime, W_prime] = pool_windows('avg_pool_ref', H, W, HH, WW, S, P);
  warnState = warning('off', 'convcore:outputSize');
  restoreWarning = onCleanup(@() warning(warnState));
  L = H_prime * W_prime;
  out = zeros([H_prime W_prime C N], class(input));
  for n = 1:N
    cols = reshape(im2col_ref(input(:,:,:,n), HH, WW, [sy sx], [pt pb pl pr], 0), [HH*WW, C, L]);
    m = mean(cols, 1);                                      % 1 x C x L
    out(:,:,:,n) = reshape_row_major(reshape(m, [C L])', [H_prime W_prime C]);
  end
end
