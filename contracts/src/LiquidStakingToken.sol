// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title LiquidStakingToken: a wstETH-like, non-rebasing liquid staking token for the keeper's devnet.
/// @notice An ERC20 (18 decimals) whose value in ETH is `stEthPerToken()` (ETH per token, 1e18-scaled;
///         also exposed as `getRate()` for Balancer-style rate providers). The rate is
///         `anchorRate + growthPerSecond * (block.timestamp - anchorTime)`: it accrues staking rewards
///         linearly per second, and the owner can set it outright at any time (e.g. to simulate a
///         slashing event or a de-peg).
/// @dev DEVNET ONLY: `mint` is open to anyone so tests and scenarios can fund accounts without a
///      staking deposit. There is no ETH backing; the rate is whatever the owner says.
contract LiquidStakingToken {
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event RateSet(uint256 rate, uint256 growthPerSecond);

    error NotOwner();
    error ZeroAddress();
    error ZeroRate();
    error InsufficientBalance(uint256 balance, uint256 needed);
    error InsufficientAllowance(uint256 allowance, uint256 needed);

    uint8 public constant decimals = 18;
    string public name;
    string public symbol;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    address public owner;
    /// @notice Rate (ETH per token, 1e18) at `anchorTime`.
    uint256 public anchorRate;
    uint256 public anchorTime;
    /// @notice Linear increase of the rate per second, in the same 1e18 units.
    uint256 public growthPerSecond;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    constructor(string memory name_, string memory symbol_, uint256 initialRate, uint256 growthPerSecond_) {
        if (initialRate == 0) revert ZeroRate();
        name = name_;
        symbol = symbol_;
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        _setRate(initialRate, growthPerSecond_);
    }

    // ------------------------------------------------------------------ exchange rate

    /// @notice ETH per token, 1e18-scaled (wstETH's name for it).
    function stEthPerToken() public view returns (uint256) {
        return anchorRate + growthPerSecond * (block.timestamp - anchorTime);
    }

    /// @notice Same as `stEthPerToken()` (rate provider interface).
    function getRate() external view returns (uint256) {
        return stEthPerToken();
    }

    /// @notice Tokens per ETH, 1e18-scaled, rounded down.
    function tokensPerStEth() external view returns (uint256) {
        return (1e18 * 1e18) / stEthPerToken();
    }

    /// @notice ETH value of `amount` tokens, rounded down (as wstETH).
    function getStETHByWstETH(uint256 amount) external view returns (uint256) {
        return (amount * stEthPerToken()) / 1e18;
    }

    /// @notice Tokens worth `ethAmount`, rounded down (as wstETH).
    function getWstETHByStETH(uint256 ethAmount) external view returns (uint256) {
        return (ethAmount * 1e18) / stEthPerToken();
    }

    /// @notice Sets the rate now and the growth from now on.
    function setRate(uint256 rate, uint256 growthPerSecond_) external onlyOwner {
        if (rate == 0) revert ZeroRate();
        _setRate(rate, growthPerSecond_);
    }

    /// @notice Keeps the current rate and changes only its growth from now on.
    function setGrowthPerSecond(uint256 growthPerSecond_) external onlyOwner {
        _setRate(stEthPerToken(), growthPerSecond_);
    }

    function _setRate(uint256 rate, uint256 growthPerSecond_) private {
        anchorRate = rate;
        anchorTime = block.timestamp;
        growthPerSecond = growthPerSecond_;
        emit RateSet(rate, growthPerSecond_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    // ------------------------------------------------------------------ ERC20

    /// @notice DEVNET ONLY: anyone may mint any amount to anyone.
    function mint(address to, uint256 amount) external {
        if (to == address(0)) revert ZeroAddress();
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(address(0), to, amount);
    }

    function burn(uint256 amount) external {
        _debit(msg.sender, amount);
        unchecked {
            totalSupply -= amount; // cannot underflow: amount <= balance <= totalSupply
        }
        emit Transfer(msg.sender, address(0), amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(allowed, amount);
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        if (to == address(0)) revert ZeroAddress();
        _debit(from, amount);
        unchecked {
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(from, to, amount);
    }

    function _debit(address from, uint256 amount) private {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        unchecked {
            balanceOf[from] = balance - amount;
        }
    }
}
