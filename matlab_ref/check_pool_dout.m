function check_pool_dout(func, dout, expected)
%CHECK_POOL_DOUT Stop unless DOUT is H' x W' x C x N = EXPECTED.
  got = [size(dout) 1 1];
  if ~isequal(got(1:4), expected) || ndims(dout) > 4
    error('%s: dout must be %dx%dx%dx%d, got %s', func, expected, mat2str(size(dout)));
  end
end
