% SHOW_SEED_BUGS  Run the seed's literal code next to the fixed code.
%
%   octave-cli matlab_ref/show_seed_bugs.m
%
% For every bug listed in DEVIATIONS.md this script runs the seed's literal
% code (seed_literal/, made to parse and nothing more) on a small case that
% isolates the bug, and the fixed code (this folder) on the same case, and
% prints two lines:
%
%   BUG <name> CONFIRMED | NOT-REPRODUCED: what the literal code did
%   FIX <name> OK | FAIL: the check the fixed code passes
%
% The fixed code is checked against conv_direct.m (direct loops, no
% im2col), against hand-computed values, or with the adjoint identity
% <im2col_ref(z), D'> = <z, im2col_back_ref(D)>.  The last line counts both.
% tests/test_matlab.py runs this script and requires every line to pass.
1;  % a script file, not a function file

function [out, err] = run_literal(ctx, fname, varargin)
  % Call FNAME with seed_literal/ first on the path (the literal code calls
  % im2col_ref and im2col_back_ref by name; they must resolve to its own).
  addpath(ctx.literal, '-begin');
  for k = 1:numel(ctx.extra)
    addpath(ctx.extra{k}, '-begin');
  end
  for k = 1:numel(ctx.hide)
    rmpath(ctx.hide{k});
  end
  out = [];
  err = '';
  try
    out = feval(fname, varargin{:});
  catch e
    err = e.message;
  end
  for k = 1:numel(ctx.hide)
    addpath(ctx.hide{k});
  end
  for k = 1:numel(ctx.extra)
    rmpath(ctx.extra{k});
  end
  rmpath(ctx.literal);
end

function ok = same(a, b)
  ok = isequal(size(a), size(b)) && all(abs(a(:) - b(:)) <= 1e-9 * max(1, max(abs(b(:)))));
end

function gap = adjoint_gap(back, z, D, kh, kw, S, P, isConv, varargin)
  % |<im2col_ref(z), D'> - <z, back(D)>| relative to the terms' size.
  cols = im2col_ref(z, kh, kw, S, P, isConv);
  g = back(D);
  if ~isequal(size(g), size(z))
    gap = Inf;
    return;
  end
  lhs = sum(sum(cols .* D'));
  rhs = sum(z(:) .* g(:));
  gap = abs(lhs - rhs) / max(1, abs(lhs));
end

function report(kind, name, ok, good, bad, msg)
  if ok
    status = good;
  else
    status = bad;
  end
  printf('%s %s %s: %s\n', kind, name, status, msg);
end

function report_bug(name, confirmed, msg)
  report('BUG', name, confirmed, 'CONFIRMED', 'NOT-REPRODUCED', msg);
end

function report_fix(name, ok, msg)
  report('FIX', name, ok, 'OK', 'FAIL', msg);
end

function s = ifelse_str(cond, a, b)
  if cond
    s = a;
  else
    s = b;
  end
end

function s = show_err(err)
  if isempty(err)
    s = 'no error';
  else
    s = ['error "' strtrim(strrep(err, sprintf('\n'), ' ')) '"'];
  end
end

% -------------------------------------------------------------------------
here = fileparts(mfilename('fullpath'));
addpath(here);
ctx = struct('literal', fullfile(here, 'seed_literal'), 'extra', {{}}, 'hide', {{}});
alt = ctx;
alt.extra = {fullfile(here, 'seed_literal', 'alt_reshape')};
nodef = ctx;
nodef.hide = {here};
warning('off', 'all');  % the literal im2col_ref warns on every non-integer size
rand('seed', 1);  randn('seed', 1);  % fixed inputs: the report is reproducible
nbug = 0; nfix = 0; nbug_ok = 0; nfix_ok = 0;

% 1. missing ends: the seed's text does not parse --------------------------
tmp = tempname();
mkdir(tmp);
src = fileread(fullfile(ctx.literal, 'im2col_ref.m'));
lines = strsplit(src, "\n");
keep = lines(cellfun(@isempty, regexp(lines, '% \[added\]\s*$', 'once')));
fid = fopen(fullfile(tmp, 'im2col_ref.m'), 'w');
fprintf(fid, '%s\n', keep{:});
fclose(fid);
verbatim = ctx;
verbatim.literal = tmp;
[~, err] = run_literal(verbatim, 'im2col_ref', magic(3), 2, 2, 1, 1, 1);
[~, err_ends] = run_literal(ctx, 'im2col_ref', magic(3), 2, 2, 1, 1, 1);
c = ~isempty(strfind(err, 'parse error')) && isempty(err_ends);
report_bug('missing_ends', c, ['the seed''s im2col_ref as printed (P=1): ' show_err(err) ...
    '; with the added ends it runs']);
x3 = [1 2 3; 4 5 6; 7 8 9];
expect3 = [1 2 4 5; 4 5 7 8; 2 3 5 6; 5 6 8 9];
f = same(im2col_ref(x3, 2, 2, 1, 0, 1), expect3);
report_fix('missing_ends', f, 'im2col_ref parses and unfolds the seed''s 3x3 by 2x2 example by hand');
confirm_recursive_rmdir(false);
rmdir(tmp, 's');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 2. missing else in "if P == 0": every unpadded call fails -----------------
[~, err] = run_literal(ctx, 'im2col_ref', x3, 2, 2, 1, 0, 1);
c = ~isempty(strfind(err, 'inputImg_Padded'));
report_bug('missing_else_pad', c, ['im2col_ref(3x3 image, 2, 2, S=1, P=0): ' show_err(err) ...
    ' (so the literal code cannot run any of the seed''s three examples, all P=0)']);
f = same(im2col_ref(x3, 2, 2, 1, 0), expect3);
report_fix('missing_else_pad', f, 'P=0 unfolds the 3x3 example from the unpadded image');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 3. missing else in "if isConv": convolution takes the pooling branch -----
x5 = reshape(1:25, 5, 5);
[lit, err] = run_literal(ctx, 'im2col_ref', x5, 2, 2, 2, 1, 1);
[lit0, err0] = run_literal(ctx, 'im2col_ref', x5, 2, 2, 2, 1, 0);
c = isempty(err) && size(lit, 2) == 16 && isempty(err0) && same(lit, lit0);
report_bug('missing_else_conv', c, sprintf(['5x5 image, 2x2 kernel, S=2, P=1 (3.5 windows per ' ...
    'axis): isConv=1 gives %d columns, pooling''s ceil count (floor gives 9), the same matrix as ' ...
    'isConv=0'], size(lit, 2)));
w22 = randn(2, 2);
y = reshape(w22(:)' * im2col_ref(x5, 2, 2, 2, 1, 1), 3, 3)';
f = same(y, conv_direct(x5, w22, 0, 2, 1));
report_fix('missing_else_conv', f, ['isConv=1 gives the 9 floor windows; times a filter they ' ...
    'equal conv_direct']);
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 4. pooling: windows hanging over the edge are skipped ---------------------
x6 = reshape(1:36, 6, 6);
[lit, err] = run_literal(ctx, 'im2col_ref', x6, 3, 3, 2, 1, 1);  % reaches the ceil branch (3)
fixed = im2col_ref(x6, 3, 3, 2, 1, 0);
nzero = sum(all(lit == 0, 1));
c = isempty(err) && isequal(size(lit), size(fixed)) && ~same(lit, fixed) && nzero > 0;
report_bug('pool_overhang_skipped', c, sprintf(['6x6 image, 3x3 window, S=2, P=1: of %d ceil columns ' ...
    'the literal fills only the windows that fit; %d trailing columns stay zero and the ' ...
    'filled ones sit at the wrong positions'], size(lit, 2), nzero));
last = zeros(9, 1);
last(1) = x6(6, 6);  % the hanging window: one image pixel, the rest pad and overhang
f = size(fixed, 2) == 16 && same(fixed(:, end), last) && same(fixed(:, 1), ...
    [0; 0; 0; 0; x6(1, 1); x6(2, 1); 0; x6(1, 2); x6(2, 2)]);
report_fix('pool_overhang_skipped', f, ['isConv=0 gives 4x4 windows; the first and the hanging last ' ...
    'one hold the expected pixels and zeros']);
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 5. the bias is overwritten by zeros ----------------------------------------
obj = struct('m_stride', 1, 'm_padding', 1);
x34 = reshape(1:12, 3, 4);
[lit, err] = run_literal(ctx, 'ForwardPropagation', obj, x34, 2, 5);
[~, err2] = run_literal(ctx, 'ForwardPropagation', obj, x34, ones(2, 2), 5);
c = isempty(err) && same(lit, conv_direct(x34, 2, 0, 1, 1)) && ~isempty(strfind(err2, 'nonconformant'));
report_bug('bias_overwritten', c, ['1x1 filter 2, bias 5: the literal output is 2*x with no +5; ' ...
    'with a 2x2 filter the zero bias has HH*WW*C = 4 rows instead of F = 1: ' show_err(err2)]);
f = same(forward_propagation(x34, 2, 5, 1, 1), conv_direct(x34, 2, 5, 1, 1)) && ...
    same(forward_propagation(x34, ones(2, 2), 5, 1, 1), conv_direct(x34, ones(2, 2), 5, 1, 1));
report_fix('bias_overwritten', f, 'forward_propagation adds the bias (1x1 and 2x2 filters) = conv_direct');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 6. output sizes are not floored -------------------------------------------
obj = struct('m_stride', 2, 'm_padding', 1);
x66 = randn(6, 6);
w33 = randn(3, 3);
[~, err] = run_literal(ctx, 'ForwardPropagation', obj, x66, w33, 0);
c = ~isempty(strfind(err, '3.5'));
report_bug('size_not_floored', c, ['6x6 input, 3x3 filter, S=2, P=1 (H'' = 3.5): ' show_err(err)]);
f = same(forward_propagation(x66, w33, 0, 2, 1), conv_direct(x66, w33, 0, 2, 1));
report_fix('size_not_floored', f, 'H'' = floor(3.5) = 3; forward_propagation = conv_direct');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 7. backward reshapes dout with H*W instead of H'*W' ------------------------
x44 = randn(4, 4);
w22 = randn(2, 2);
dout55 = randn(5, 5);
obj = struct('m_stride', 1, 'm_padding', 1, 'weights', w22, 'previousInput', x44);
[~, err] = run_literal(ctx, 'BackwardPropagation', obj, struct('input', dout55));
c = ~isempty(strfind(err, 'reshape'));
report_bug('reshape_uses_HW', c, ['4x4 input, 2x2 filter, P=1 (H''*W'' = 25, H*W = 16): ' show_err(err)]);
g = backward_propagation(dout55, x44, w22, [], 1, 1);
[~, dx, dw, db] = conv_direct(x44, w22, 0, 1, 1, dout55);
f = same(g.input, dx) && same(g.weight, dw) && same(g.bias, db);
report_fix('reshape_uses_HW', f, 'backward_propagation = conv_direct (dx, dw, db)');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 8. im2col_back_ref: wrong start row for stride > 1 -----------------------
D = (1:6)';
[~, err] = run_literal(ctx, 'im2col_back_ref', D, 2, 3, 2, 1, 1, 1);
starts = floor(((0:5) / 3) * 2) + 1;  % the seed's h_start for the 6 windows
c = ~isempty(strfind(err, 'out of bound')) && isequal(starts, [1 1 2 3 3 4]);
report_bug('start_row_stride', c, sprintf(['2x3 windows, 1x1 kernel, S=2: h_start = ' ...
    'floor(((ii-1)/dout_W)*S)+1 gives rows [%s] instead of [1 1 1 3 3 3]; the last window ' ...
    'falls off the 3-row gradient: %s'], num2str(starts), show_err(err)));
z = randn(3, 5);
f = adjoint_gap(@(D) im2col_back_ref(D, 2, 3, 2, 1, 1, 1), z, D, 1, 1, 2, 0, 1) < 1e-12;
report_fix('start_row_stride', f, 'h_start = floor((ii-1)/dout_W)*S + 1; the adjoint identity holds');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 9. padding removal hard-coded to 1 ----------------------------------------
x = randn(4, 5, 2, 2);
w = randn(3, 3, 2);
dout = randn(4, 5, 1, 2);
obj = struct('m_stride', 1, 'm_padding', 1, 'weights', w, 'previousInput', x);
lit1 = run_literal(ctx, 'BackwardPropagation', obj, struct('input', dout));
[~, dx, dw, db] = conv_direct(x, w, 0, 1, 1, dout);
control = same(lit1.input, dx) && same(lit1.weight, dw) && same(lit1.bias(:), db);
w5 = randn(5, 5, 2);
obj2 = struct('m_stride', 1, 'm_padding', 2, 'weights', w5, 'previousInput', x);
[~, err2] = run_literal(ctx, 'BackwardPropagation', obj2, struct('input', dout));
c = control && ~isempty(strfind(err2, 'nonconformant'));
report_bug('pad_removal_is_1', c, ['with P=1 (3x3 filter, S=1, F=1) the literal backward ' ...
    'matches conv_direct; with P=2 (5x5 filter, same output size) dx_padded(2:end-1, ' ...
    '2:end-1, :) keeps one padding pixel per side: ' show_err(err2)]);
f = true;
for P = 0:2
  wk = randn(2 * P + 1, 2 * P + 1, 2);
  g = backward_propagation(dout, x, wk, [], 1, P);
  [~, dx, dw, db] = conv_direct(x, wk, 0, 1, P, dout);
  f = f && same(g.input, dx) && same(g.weight, dw) && same(g.bias, db);
end
report_fix('pad_removal_is_1', f, 'the padding P is removed; backward_propagation = conv_direct for P = 0, 1, 2');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 10. im2col_back_ref ignores the padding -----------------------------------
% One output column (W' = 1), so the start-row bug (8) does not interfere.
D = randn(3, 6);
[lit, err] = run_literal(ctx, 'im2col_back_ref', D, 3, 1, 2, 2, 3, 1);
c = isempty(err) && isequal(size(lit), [6 3]);
report_bug('back_ref_ignores_pad', c, sprintf(['5x1 image, 2x3 kernel, S=2, P=1 (3x1 windows): ' ...
    'the padded image is 7x3 but im2col_back_ref returns %dx%d (the floor dropped a row), so ' ...
    'cutting one pixel per side gives %dx%d, not 5x1'], size(lit, 1), size(lit, 2), ...
    size(lit, 1) - 2, size(lit, 2) - 2));
z = randn(5, 1);
f = adjoint_gap(@(D) im2col_back_ref(D, 3, 1, 2, 2, 3, 1, 1, 5, 1), z, D, 2, 3, 2, 1, 1) < 1e-12;
report_fix('back_ref_ignores_pad', f, ['im2col_back_ref(..., P, H, W) returns the 5x1 gradient, ' ...
    'the adjoint of im2col_ref(z, 2, 3, 2, 1)']);
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 11. reshape_row_major is never defined -------------------------------------
obj = struct('m_stride', 1, 'm_padding', 1);
[~, err] = run_literal(nodef, 'ForwardPropagation', obj, x34, 2, 0);
c = ~isempty(strfind(err, 'reshape_row_major'));
report_bug('reshape_row_major_undefined', c, ['the literal forward without this folder: ' show_err(err)]);
f = same(reshape_row_major([1 2 3; 4 5 6], [3 2]), [1 2; 3 4; 5 6]) && ...
    same(reshape_row_major(reshape(1:24, 2, 3, 4), [4 6]), ...
         reshape(permute(reshape(1:24, 2, 3, 4), [3 2 1]), 6, 4)');
report_fix('reshape_row_major_undefined', f, 'reshape_row_major.m is NumPy''s row-major reshape');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 12. forward: reshape_row_major(mul, ...) scrambles the filters (F > 1) ----
x = randn(3, 4, 2);
w = randn(1, 1, 2, 2);  % HH*WW*C = F = 2, so the zeroed bias (5) does not fail
obj = struct('m_stride', 1, 'm_padding', 1);
want = conv_direct(x, w, [0; 0], 1, 1);
[lit, err] = run_literal(ctx, 'ForwardPropagation', obj, x, w, [0; 0]);
[lit_alt, err_alt] = run_literal(alt, 'ForwardPropagation', obj, x, w, [0; 0]);
c = isempty(err) && ~same(lit, want);
alt_ok = isempty(err_alt) && same(lit_alt, want);
report_bug('forward_reshape_F', c, sprintf(['1x1x2x2 filters, zero bias: the output channels are mixed ' ...
    '(max error %.3g); with the other reading of reshape_row_major (alt_reshape/) the forward ' ...
    'pass is %s'], max(abs(lit(:) - want(:))), ifelse_str(alt_ok, 'right', 'wrong')));
f = same(forward_propagation(x, w, [0; 0], 1, 1), want);
report_fix('forward_reshape_F', f, 'reshape_row_major(mul'', [H'' W'' F]); forward_propagation = conv_direct');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 13. backward: the filter and dout reshapes (F > 1) ------------------------
x = randn(4, 5);
w = randn(3, 3, 1, 2);
dout = randn(4, 5, 2);
obj = struct('m_stride', 1, 'm_padding', 1, 'weights', w, 'previousInput', x);
[~, dx, dw, db] = conv_direct(x, w, [0; 0], 1, 1, dout);
lit = run_literal(ctx, 'BackwardPropagation', obj, struct('input', dout));
lit_alt = run_literal(alt, 'BackwardPropagation', obj, struct('input', dout));
c = ~same(lit.input, dx) && ~same(lit_alt.input, dx);
report_bug('backward_reshape_F', c, ['3x3x1x2 filters, S=1, P=1 (the happy path but F=2): dx is wrong ' ...
    'with either reading of reshape_row_major (row-major reshape scrambles the filter matrix; ' ...
    'the other reading transposes dout''s positions and the patches)']);
g = backward_propagation(dout, x, w, [], 1, 1);
f = same(g.input, dx) && same(g.weight, dw) && same(g.bias, db);
report_fix('backward_reshape_F', f, 'backward_propagation = conv_direct (dx, dw, db)');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

% 14. im2col_back_ref undoes patch(:) with reshape_row_major --------------
D = randn(4, 4);
z = randn(3, 3);
gap = adjoint_gap(@(D) run_literal(ctx, 'im2col_back_ref', D, 2, 2, 1, 2, 2, 1), z, D, 2, 2, 1, 0, 1);
c = gap > 1e-6;
report_bug('back_ref_patch_order', c, sprintf(['3x3 image, 2x2 kernel, S=1: each row is reshaped row-major ' ...
    'but im2col_ref flattened it column-major (patch(:)); <im2col_ref(z), D''> - <z, back(D)> ' ...
    'is off by %.3g (relative)'], gap));
f = adjoint_gap(@(D) im2col_back_ref(D, 2, 2, 1, 2, 2, 1), z, D, 2, 2, 1, 0, 1) < 1e-12;
report_fix('back_ref_patch_order', f, 'reshape(row, [HH WW C]) (the seed''s commented-out line); adjoint holds');
nbug += 1; nbug_ok += c; nfix += 1; nfix_ok += f;

printf('SUMMARY %d/%d seed bugs confirmed, %d/%d fixes verified\n', nbug_ok, nbug, nfix_ok, nfix);
