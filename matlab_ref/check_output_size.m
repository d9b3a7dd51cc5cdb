function check_output_size(func, H, W, HH, WW, sy, sx, pt, pb, pl, pr, isConv, H_prime, W_prime)
%CHECK_OUTPUT_SIZE The seed's warning for a non-integer output size.
%   CHECK_OUTPUT_SIZE(FUNC, H, W, HH, WW, SY, SX, PT, PB, PL, PR, ISCONV, H', W')
%   warns with the identifier 'convcore:outputSize' when (H+PT+PB-HH)/SY + 1
%   or (W+PL+PR-WW)/SX + 1 is not an integer, as the seed's im2col_ref does
%   ('Invalid stride or pad for input'), naming the sizes and what is done:
%   the floor for a convolution (ISCONV = 1), the ceil for pooling.  H' x W' is
%   the size used.  warning('error', 'convcore:outputSize') makes it an error
%   (convcore.matlab.strict() in Python); warning('off', ...) silences it.
%
%   Not in the seed as a function; see DEVIATIONS.md.
  spanH = H + pt + pb - HH;
  spanW = W + pl + pr - WW;
  terms = {};
  if mod(spanH, sy) ~= 0
    terms{end+1} = sprintf('(H + T + B - HH) / SY + 1 = (%d + %d + %d - %d) / %d + 1 = %g', ...
                           H, pt, pb, HH, sy, spanH / sy + 1);
  end
  if mod(spanW, sx) ~= 0
    terms{end+1} = sprintf('(W + L + R - WW) / SX + 1 = (%d + %d + %d - %d) / %d + 1 = %g', ...
                           W, pl, pr, WW, sx, spanW / sx + 1);
  end
  if isempty(terms)
    return
  end
  if numel(terms) == 2
    what = [terms{1} ' is not an integer, nor ' terms{2}];
  else
    what = [terms{1} ' is not an integer'];
  end
  if isConv
    left = {};
    words = {'row', 'column'};
    unread = [mod(spanH, sy), mod(spanW, sx)];
    for k = 1:2
      if unread(k) == 1
        left{end+1} = sprintf('1 %s', words{k});
      elseif unread(k) > 1
        left{end+1} = sprintf('%d %ss', unread(k), words{k});
      end
    end
    done = sprintf(['the convolution takes the floor: H'' x W'' = %d x %d, the last %s ' ...
                    'of the padded input unread'], H_prime, W_prime, strjoin(left, ' and '));
  else
    done = sprintf(['pooling takes the ceil: H'' x W'' = %d x %d, the last windows hanging ' ...
                    'over the bottom/right edge and reading zeros there'], H_prime, W_prime);
  end
  warning('convcore:outputSize', '%s: invalid stride or pad for the input: %s; %s', ...
          func, what, done);
end
