function [y, dx, dw, db] = conv_direct(x, w, b, S, P, dout)
%CONV_DIRECT Direct-loop convolution and gradients: an oracle with no im2col.
%   [Y, DX, DW, DB] = CONV_DIRECT(X, W, B, S, P, DOUT) with the layouts of
%   forward_propagation / backward_propagation.  Every output element is a
%   sum over kernel taps with bounds checks instead of a padded copy.  Slow;
%   for checking small cases only.
  [sy, sx, pt, pb, pl, pr] = conv_options(S, P);
  [H, W, C, N] = size(x);
  [HH, WW, ~, F] = size(w);
  Ho = floor((H + pt + pb - HH) / sy) + 1;
  Wo = floor((W + pl + pr - WW) / sx) + 1;
  if isempty(b)
    b = zeros(F, 1);
  end
  y = zeros(Ho, Wo, F, N);
  dx = zeros(H, W, C, N);
  dw = zeros(HH, WW, C, F);
  db = zeros(F, 1);
  for n = 1:N
    for f = 1:F
      for oh = 1:Ho
        for ow = 1:Wo
          acc = b(f);
          if nargin >= 6
            g = dout(oh, ow, f, n);
            db(f) = db(f) + g;
          end
          for i = 1:HH
            for j = 1:WW
              ih = (oh - 1) * sy - pt + i;
              iw = (ow - 1) * sx - pl + j;
              if ih >= 1 && ih <= H && iw >= 1 && iw <= W
                for c = 1:C
                  acc = acc + w(i, j, c, f) * x(ih, iw, c, n);
                  if nargin >= 6
                    dx(ih, iw, c, n) = dx(ih, iw, c, n) + w(i, j, c, f) * g;
                    dw(i, j, c, f) = dw(i, j, c, f) + x(ih, iw, c, n) * g;
                  end
                end
              end
            end
          end
          y(oh, ow, f, n) = acc;
        end
      end
    end
  end
end
