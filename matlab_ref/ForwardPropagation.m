function [activations, obj] = ForwardPropagation(obj, input, weights, bias)
%FORWARDPROPAGATION The seed's layer method: forward pass that caches.
%   [ACTIVATIONS, OBJ] = FORWARDPROPAGATION(OBJ, INPUT, WEIGHTS, BIAS), where
%   OBJ is a struct with fields m_stride and m_padding (the seed's layer
%   properties).  The returned OBJ caches activations, weights, biases and
%   previousInput for BackwardPropagation.  (The seed assigns to obj inside
%   a method; with value semantics the updated obj must be returned.)
  activations = forward_propagation(input, weights, bias, obj.m_stride, obj.m_padding);
  obj.activations = activations;
  obj.weights = weights;
  obj.biases = bias;
  obj.previousInput = input;
end
