import { GraceMoeError } from '../errors.js';

/** A setting from a command-line flag or a GRACE_MOE_* environment variable is invalid. */
export class ConfigError extends GraceMoeError {
  readonly code = 'CONFIG_INVALID';
}
